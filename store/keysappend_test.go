package store

import (
	"bytes"
	"strings"
	"testing"
)

// TestAppendKeysMatch checks that the append forms build the same bytes
// as RecordKey and TeamIndexKey after whatever dst holds, and that
// RecordKey's slice has no spare capacity a caller's append could share.
func TestAppendKeysMatch(t *testing.T) {
	long := strings.Repeat("x", 300) // a two-byte length prefix
	for _, s := range [][3]string{{"wigan", "people", "p1"}, {"", "", ""}, {long, "a/b", long + "y"}} {
		want := RecordKey(s[0], s[1], s[2])
		if cap(want) != len(want) {
			t.Errorf("RecordKey%q: len %d, cap %d", s, len(want), cap(want))
		}
		ref, err := ParseRecordKey(want)
		if err != nil || ref != (RecordRef{s[0], s[1], s[2]}) {
			t.Errorf("RecordKey%q parses as %+v, %v", s, ref, err)
		}
		got := AppendRecordKey([]byte("pre"), s[0], s[1], s[2])
		if !bytes.Equal(got, append([]byte("pre"), want...)) {
			t.Errorf("AppendRecordKey%q = %q, want %q after the prefix", s, got, want)
		}
		wantIdx := TeamIndexKey(s[1], s[2])
		if got := AppendTeamIndexKey([]byte("pre"), s[1], s[2]); !bytes.Equal(got, append([]byte("pre"), wantIdx...)) {
			t.Errorf("AppendTeamIndexKey%q = %q, want %q after the prefix", s[1:], got, wantIdx)
		}
	}
}
