//go:build race

package e2e

// raceOn reports a -race build: the abuse tests then send smaller attacks
// (the race detector makes the server and the test several times slower)
// and allow the victim three times the time.
const raceOn = true
