//go:build !race

package e2e

// raceOn reports a -race build (see race_on_test.go).
const raceOn = false
