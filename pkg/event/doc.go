// Package event is what every source reports and every store applies:
// one change (upsert, delete, member join or leave) in one member
// cluster. It is a leaf: sources, stores and the assembler all depend on
// it, and it on nothing of eastwest's.
package event
