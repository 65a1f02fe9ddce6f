// Package parallel runs independent pieces of work on every core.
package parallel
