package schema

import (
	"fmt"
	"slices"
	"time"
)

// TypeAttachment is the value type of a file attached to a record: a
// photo, a signed consent form, a letter. The value is only the file's
// metadata (see Attachment); the bytes travel separately, content addressed
// by their SHA-256, so a record never waits for its file. An attachment
// field merges like any other: a register holds one file, a log appends
// several.
const TypeAttachment ValueType = "attachment"

// AttachmentTypes are the content types an attachment may have: JPEG, PNG,
// HEIC photos and PDF documents. Servers sniff the bytes and refuse any
// other type.
var AttachmentTypes = []string{"image/jpeg", "image/png", "image/heic", "application/pdf"}

// MaxAttachmentSize is the largest size an attachment's metadata may state
// (1 GiB). Servers apply their own, usually much smaller, limit per file.
const MaxAttachmentSize = 1 << 30

// Attachment is the metadata of an attached file, the value of an
// attachment field. In msgpack it is a map with the keys sha256,
// size, content_type, captured_at, captured_by and optionally name.
type Attachment struct {
	// SHA256 is the file's SHA-256 as 64 lowercase hex digits.
	SHA256 string
	// Size is the file's length in bytes, 1 to MaxAttachmentSize.
	Size int64
	// ContentType is one of AttachmentTypes.
	ContentType string
	// CapturedAt is when the photo was taken or the form scanned.
	CapturedAt time.Time
	// CapturedBy names who captured it (a user ID), at most 64 bytes.
	CapturedBy string
	// Name is an optional display name (a file name), at most 200 bytes.
	Name string
}

// Value returns the attachment as a field value, for a write.
func (a Attachment) Value() map[string]any {
	m := map[string]any{
		"sha256": a.SHA256, "size": a.Size, "content_type": a.ContentType,
		"captured_at": a.CapturedAt.UTC().Format(time.RFC3339Nano), "captured_by": a.CapturedBy,
	}
	if a.Name != "" {
		m["name"] = a.Name
	}
	return m
}

// Check validates the metadata as an attachment value would be validated.
func (a Attachment) Check() error {
	if ve := checkAttachment(a.Value()); ve != nil {
		return fmt.Errorf("attachment: %s: %s", ve.path, ve.reason)
	}
	return nil
}

// ParseAttachment reads an attachment value as DecodeValue returns it (or
// as a Value map built in memory), checking it.
func ParseAttachment(v any) (Attachment, error) {
	if ve := checkAttachment(v); ve != nil {
		if ve.path != "" {
			return Attachment{}, fmt.Errorf("attachment %s: %s", ve.path, ve.reason)
		}
		return Attachment{}, fmt.Errorf("attachment: %s", ve.reason)
	}
	m := v.(map[string]any)
	a := Attachment{SHA256: m["sha256"].(string), ContentType: m["content_type"].(string), CapturedBy: m["captured_by"].(string)}
	a.Size, _ = asInt(m["size"])
	a.CapturedAt, _ = time.Parse(time.RFC3339Nano, m["captured_at"].(string))
	a.Name, _ = m["name"].(string)
	return a, nil
}

// IsSHA256 reports whether s is a SHA-256 digest in 64 lowercase hex digits.
func IsSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func asInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case uint64:
		return 0, false
	}
	return 0, false
}

func checkAttachment(v any) *valueError {
	m, ok := v.(map[string]any)
	if !ok {
		return &valueError{reason: fmt.Sprintf("attachment value is a msgpack %s, want map", typeName(v)), wrong: true}
	}
	for k := range m {
		switch k {
		case "sha256", "size", "content_type", "captured_at", "captured_by", "name":
		default:
			return &valueError{path: clip(k), reason: "unknown property"}
		}
	}
	str := func(k string, max int, required bool) (string, *valueError) {
		x, present := m[k]
		if !present || x == nil {
			if required {
				return "", &valueError{path: k, reason: "required property missing"}
			}
			return "", nil
		}
		s, ok := x.(string)
		if !ok {
			return "", &valueError{path: k, reason: fmt.Sprintf("value is a msgpack %s, want string", typeName(x)), wrong: true}
		}
		if ve := checkString(s, max); ve != nil {
			ve.path = k
			return "", ve
		}
		return s, nil
	}
	sum, ve := str("sha256", 64, true)
	if ve != nil {
		return ve
	}
	if !IsSHA256(sum) {
		return &valueError{path: "sha256", reason: "not 64 lowercase hex digits"}
	}
	ct, ve := str("content_type", 64, true)
	if ve != nil {
		return ve
	}
	if !slices.Contains(AttachmentTypes, ct) {
		return &valueError{path: "content_type", reason: fmt.Sprintf("%q is not one of %v", clip(ct), AttachmentTypes)}
	}
	at, ve := str("captured_at", 64, true)
	if ve != nil {
		return ve
	}
	if _, err := time.Parse(time.RFC3339Nano, at); err != nil {
		return &valueError{path: "captured_at", reason: fmt.Sprintf("%q is not RFC 3339", clip(at))}
	}
	if _, ve := str("captured_by", 64, true); ve != nil {
		return ve
	}
	if _, ve := str("name", 200, false); ve != nil {
		return ve
	}
	x, present := m["size"]
	if !present || x == nil {
		return &valueError{path: "size", reason: "required property missing"}
	}
	n, ok := asInt(x)
	if !ok {
		return &valueError{path: "size", reason: fmt.Sprintf("value is a msgpack %s, want integer", typeName(x)), wrong: true}
	}
	if n < 1 || n > MaxAttachmentSize {
		return &valueError{path: "size", reason: fmt.Sprintf("%d bytes, want 1 to %d", n, MaxAttachmentSize)}
	}
	return nil
}

// AttachmentFields returns the names of a collection's attachment fields.
func (c *Collection) AttachmentFields() []string {
	var out []string
	for _, f := range c.Fields {
		if f.Type == TypeAttachment {
			out = append(out, f.Name)
		}
	}
	return out
}
