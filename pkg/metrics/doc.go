// Package metrics defines every Prometheus metric eastwest exports (prefix
// eastwest_) in one place, and the small methods the other packages call
// to update them.
package metrics
