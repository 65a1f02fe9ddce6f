// Package syncbuf is a buffer one goroutine writes while another reads it
// (a test reading a logger's or a command's output as it goes).
package syncbuf
