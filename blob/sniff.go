package blob

import (
	"fmt"

	"github.com/doorstep-health/doorstep/schema"
)

// SniffLen is how many leading bytes Sniff looks at.
const SniffLen = schema.SniffLen

// Sniff returns the content type of a file from its first bytes (see
// schema.SniffAttachment): image/jpeg, image/png, image/heic or
// application/pdf. Anything else, and executables in particular, is
// ErrRefusedType.
func Sniff(head []byte) (string, error) {
	ct, err := schema.SniffAttachment(head)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrRefusedType, err)
	}
	return ct, nil
}
