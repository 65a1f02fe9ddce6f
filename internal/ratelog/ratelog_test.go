package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A flood of one warning logs the burst, drops the rest, and the next
// interval's first message says how many were dropped; other keys are
// not held up by a flooding one.
func TestBurstPerKeyAndSuppressedCount(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), time.Second, 2)
	now := time.Unix(0, 0)
	l.now = func() time.Time { return now }
	for range 1000 {
		l.Warn("flood", "refused")
	}
	l.Warn("other", "different")
	now = now.Add(time.Second)
	l.Warn("flood", "refused")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines logged, want 4:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[2], "different") {
		t.Errorf("the other key's warning was not logged: %s", lines[2])
	}
	if !strings.Contains(lines[3], "suppressed=998") {
		t.Errorf("the next interval's warning does not count the dropped ones: %s", lines[3])
	}
}
