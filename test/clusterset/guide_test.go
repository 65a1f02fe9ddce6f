package clusterset

import (
	"reflect"
	"strings"
	"testing"
)

// The guides' sh blocks are read as a reader copies them: the fence's
// indentation removed (a block in a list item), other languages' blocks
// left out, a block marked not run kept with its reason; a block not
// closed, or a line indented less than its fence, is an error rather than
// a command run wrong.
func TestGuideBlocks(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []block
		err       string
	}{
		{
			name: "top level and in a list item",
			doc:  "# T\n\n```sh\necho one\n```\n\n1. Step:\n\n   ```sh\n   cat <<EOF\n   a: b\n   EOF\n   ```\n",
			want: []block{{file: "g.md", line: 3, text: "echo one\n"}, {file: "g.md", line: 9, text: "cat <<EOF\na: b\nEOF\n"}},
		},
		{
			name: "other languages left out",
			doc:  "```yaml\na: b\n```\n```\nplain\n```\n```sh\nls\n```\n",
			want: []block{{file: "g.md", line: 7, text: "ls\n"}},
		},
		{
			name: "marked not run, with the reason",
			doc:  "<!-- not run by test/clusterset: it needs cert-manager -->\n```sh\nhelm install x\n```\n\n```sh\nls\n```\n",
			want: []block{{file: "g.md", line: 2, text: "helm install x\n", skip: "it needs cert-manager"}, {file: "g.md", line: 6, text: "ls\n"}},
		},
		{
			name: "blank lines inside a block are kept",
			doc:  "  ```sh\n  a\n\n  b\n  ```\n",
			want: []block{{file: "g.md", line: 1, text: "a\n\nb\n"}},
		},
		{name: "not closed", doc: "```sh\nls\n", err: "not closed"},
		{name: "indented less than its fence", doc: "   ```sh\n   a\n  b\n   ```\n", err: "indented less"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := guideBlocks("g.md", []byte(tc.doc))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// Every guide Up runs has blocks, and every block it does not run says
// why; the script runs the rest in order, stopping at the first failure.
func TestGuidesAreRunnable(t *testing.T) {
	var all []block
	for _, g := range Guides {
		bs := readGuide(t, g)
		run := 0
		for _, b := range bs {
			if b.skip == "" {
				run++
			}
		}
		if run == 0 {
			t.Errorf("%s: no block is run", g)
		}
		all = append(all, bs...)
	}
	script, ran, skipped := guideScript(all)
	if !strings.HasPrefix(script, "set -Eeuo pipefail\n") {
		t.Errorf("the script does not stop at the first failure:\n%s", script[:min(len(script), 200)])
	}
	if len(ran)+len(skipped) != len(all) {
		t.Errorf("%d run and %d not run of %d blocks", len(ran), len(skipped), len(all))
	}
	for _, s := range skipped {
		if _, why, _ := strings.Cut(s, ": "); strings.TrimSpace(why) == "" {
			t.Errorf("a block not run gives no reason: %s", s)
		}
	}
}
