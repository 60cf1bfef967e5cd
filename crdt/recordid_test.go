package crdt

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidateRecordID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"p1", true},
		{"0190f6c2-1a2b-7c3d-8e4f-0123456789ab", true}, // UUIDv7, as the demo makes
		{"00112233445566778899aabbccddeeff", true},     // client.NewID
		{"A.b_c-9", true},
		{strings.Repeat("x", MaxRecordIDLen), true},
		{"", false},
		{strings.Repeat("x", MaxRecordIDLen+1), false},
		{"\xff\xfe", false}, // invalid UTF-8: JSON would replace it
		{"a/b", false},      // would split a URL path
		{"a b", false},
		{"a\x00b", false},
		{"é", false},
		{"a%2Fb", false},
		{"../x", false},
		{"a\nb", false},
	}
	for _, tt := range tests {
		err := ValidateRecordID(tt.id)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateRecordID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrBadRecordID) {
			t.Errorf("ValidateRecordID(%q) = %v, not ErrBadRecordID", tt.id, err)
		}
	}
}

// FuzzValidateRecordID: every accepted ID is printable ASCII, valid UTF-8,
// within the length and free of anything a URL path or JSON would alter.
func FuzzValidateRecordID(f *testing.F) {
	for _, s := range []string{"p1", "\xff\xfe", "a/b", strings.Repeat("z", 65), "0190f6c2-1a2b-7c3d-8e4f-0123456789ab"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := ValidateRecordID(id)
		if err != nil {
			if !errors.Is(err, ErrBadRecordID) {
				t.Fatalf("%q: %v", id, err)
			}
			return
		}
		if len(id) == 0 || len(id) > MaxRecordIDLen || !utf8.ValidString(id) {
			t.Fatalf("accepted %q", id)
		}
		if strings.ContainsAny(id, "/?#%\\\" \t\r\n") {
			t.Fatalf("accepted %q", id)
		}
	})
}
