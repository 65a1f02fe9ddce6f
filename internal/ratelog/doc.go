// Package ratelog bounds how often a warning that outside input can
// trigger is logged: a client (or a file) repeating a mistake thousands of
// times a second must not flood the log or cost CPU in it.
package ratelog
