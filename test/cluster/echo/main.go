// Command echo is the test pods' server in the real-node clusters
// (test/cluster): it answers every HTTP request on $PORT (8080) with its
// pod's name (from $POD_NAME, else the host name) and exits on SIGTERM.
// Static (CGO off), so its image needs nothing else.
package main

import (
	"cmp"
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	name := cmp.Or(os.Getenv("POD_NAME"), hostname())
	srv := &http.Server{Addr: ":" + cmp.Or(os.Getenv("PORT"), "8080"), ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, name) })}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}
