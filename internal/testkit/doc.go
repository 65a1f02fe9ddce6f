// Package testkit is what the project's tests share beyond golden files:
// the cases of a table read from disk, and the helpers every test package
// would otherwise write again (one way to wait, one way to write a file
// a watcher reads).
package testkit
