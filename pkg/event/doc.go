// Package event is what every source reports and every store applies:
// one change (upsert, delete, member join or leave) in one member
// cluster, and the kinds of object it carries (kinds.go: the one table
// that decoding, the folder, the informers and the routing of events to
// stores read). It is a leaf: sources, stores and the assembler all depend
// on it, and it on nothing of eastwest's but the About API type.
package event
