package schema

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func goodAttachment() Attachment {
	return Attachment{SHA256: strings.Repeat("ab", 32), Size: 20 << 20, ContentType: "image/jpeg",
		CapturedAt: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), CapturedBy: "u-lw1", Name: "hazard.jpg"}
}

// The default schema carries attachment fields in the home-visit
// collections, and their values validate like any other field's.
func TestAttachmentFieldValidates(t *testing.T) {
	s := Default()
	for _, cf := range [][2]string{{"contacts", "photos"}, {"consent_events", "signed_form"}, {"referrals", "letters"}} {
		f, ok := s.Field(cf[0], cf[1])
		if !ok || f.Type != TypeAttachment {
			t.Fatalf("%s.%s: missing or not an attachment field", cf[0], cf[1])
		}
	}
	f, _ := s.Field("contacts", "photos")
	good := goodAttachment().Value()
	if err := f.ValidateValue(good); err != nil {
		t.Fatalf("good attachment refused: %v", err)
	}
	a, err := ParseAttachment(good)
	if err != nil || a != goodAttachment() {
		t.Fatalf("ParseAttachment = %+v, %v", a, err)
	}
	bad := []struct {
		name  string
		edit  func(m map[string]any)
		wrong bool
	}{
		{"short hash", func(m map[string]any) { m["sha256"] = "abc" }, false},
		{"upper hex", func(m map[string]any) { m["sha256"] = strings.Repeat("AB", 32) }, false},
		{"zero size", func(m map[string]any) { m["size"] = int64(0) }, false},
		{"huge size", func(m map[string]any) { m["size"] = int64(MaxAttachmentSize + 1) }, false},
		{"size as string", func(m map[string]any) { m["size"] = "12" }, true},
		{"executable", func(m map[string]any) { m["content_type"] = "application/x-msdownload" }, false},
		{"bad time", func(m map[string]any) { m["captured_at"] = "yesterday" }, false},
		{"no author", func(m map[string]any) { delete(m, "captured_by") }, false},
		{"unknown key", func(m map[string]any) { m["path"] = "/etc/passwd" }, false},
		{"long name", func(m map[string]any) { m["name"] = strings.Repeat("x", 201) }, false},
	}
	for _, tt := range bad {
		m := goodAttachment().Value()
		tt.edit(m)
		err := f.ValidateValue(m)
		want := ErrInvalidValue
		if tt.wrong {
			want = ErrWrongType
		}
		if !errors.Is(err, want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, want)
		}
	}
	if err := f.ValidateValue("a photo"); !errors.Is(err, ErrWrongType) {
		t.Errorf("string value: err = %v, want ErrWrongType", err)
	}
}

// Through the msgpack decoder a device's bytes validate the same way.
func TestAttachmentFromMsgpack(t *testing.T) {
	f, _ := Default().Field("consent_events", "signed_form")
	b, err := msgpack.Marshal(goodAttachment().Value())
	if err != nil {
		t.Fatal(err)
	}
	v, err := DecodeValue(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ValidateValue(v); err != nil {
		t.Fatalf("decoded attachment refused: %v", err)
	}
}
