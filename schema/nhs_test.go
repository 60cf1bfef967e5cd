package schema

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

var (
	seedFlag = flag.Uint64("seed", 0, "seed for the randomized tests (0: pick one and print it)")
	longFlag = flag.Bool("long", false, "run far more random cases")
)

// refNHS is an independent statement of the NHS Data Dictionary's modulus
// 11 rule, written the long way round, to check CheckNHSNumber against.
func refNHS(s string) bool {
	if len(s) != 10 {
		return false
	}
	weights := []int{10, 9, 8, 7, 6, 5, 4, 3, 2}
	total := 0
	for i, w := range weights {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
		total += int(s[i]-'0') * w
	}
	if s[9] < '0' || s[9] > '9' {
		return false
	}
	remainder := total % 11
	check := 11 - remainder
	if check == 11 {
		check = 0
	}
	if check == 10 {
		return false
	}
	return check == int(s[9]-'0')
}

func TestNHSNumberRandom(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -seed %d)", seed, seed)
	r := rand.New(rand.NewPCG(seed, 0))
	n := 20_000
	if *longFlag {
		n = 2_000_000
	}
	valid := 0
	for range n {
		s := fmt.Sprintf("%010d", r.Uint64N(10_000_000_000))
		if r.IntN(10) == 0 { // sometimes a stray character or length
			b := []byte(s)
			b[r.IntN(len(b))] = byte(r.IntN(128))
			s = string(b[:r.IntN(len(b)+1)])
		}
		if got, want := ValidNHSNumber(s), refNHS(s); got != want {
			t.Fatalf("ValidNHSNumber(%q) = %v, reference says %v", s, got, want)
		}
		if ValidNHSNumber(s) {
			valid++
		}
	}
	// About 10 in 11 prefixes have a check digit, and one final digit in
	// ten matches it: roughly 9% of random numbers are valid.
	if valid < n/20 || valid > n/7 {
		t.Fatalf("%d of %d random numbers valid", valid, n)
	}
}
