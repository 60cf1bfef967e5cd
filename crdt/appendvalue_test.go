package crdt

import (
	"bytes"
	"strings"
	"testing"
)

func TestAppendStringValue(t *testing.T) {
	for _, n := range []int{0, 1, 31, 32, 255, 256, 65535, 65536, 70000} {
		s := strings.Repeat("é", n/2) + strings.Repeat("x", n%2)
		want, err := EncodeValue(s)
		if err != nil {
			t.Fatal(err)
		}
		got := AppendStringValue([]byte{7}, s)
		if got[0] != 7 || !bytes.Equal(got[1:], want) {
			t.Fatalf("%d bytes: got %x, want %x", len(s), got[1:min(len(got), 8)], want[:min(len(want), 7)])
		}
	}
}
