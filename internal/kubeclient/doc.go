// Package kubeclient makes the clients eastwest reads and writes member
// clusters' built-in kinds with.
package kubeclient
