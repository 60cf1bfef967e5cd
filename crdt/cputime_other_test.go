//go:build !unix

package crdt

// processCPU returns 0: CPU time is measured on unix only.
func processCPU() int64 { return 0 }
