package blob

import (
	"errors"
	"fmt"
)

// Sentinel errors callers branch on.
var (
	// ErrNotFound: no blob or upload with this hash in this team.
	ErrNotFound = errors.New("blob: not found")
	// ErrBadRequest: a malformed hash, size or record reference.
	ErrBadRequest = errors.New("blob: bad request")
	// ErrTooLarge: the file is larger than Config.MaxFileSize.
	ErrTooLarge = errors.New("blob: file too large")
	// ErrQuota: the team's quota would be exceeded.
	ErrQuota = errors.New("blob: team quota exceeded")
	// ErrOffset: the stated offset is not the number of bytes held; see
	// OffsetError for the right one.
	ErrOffset = errors.New("blob: upload offset mismatch")
	// ErrSizeMismatch: the stated size differs from the size the upload
	// was started with, or the body runs past it.
	ErrSizeMismatch = errors.New("blob: size mismatch")
	// ErrHashMismatch: the complete bytes do not hash to the blob's name;
	// the upload was discarded.
	ErrHashMismatch = errors.New("blob: hash mismatch")
	// ErrRefusedType: the bytes are not an allowed type (JPEG, PNG, HEIC,
	// PDF); the upload was discarded.
	ErrRefusedType = errors.New("blob: content type refused")
	// ErrBusy: another request is writing this upload and did not finish
	// in time.
	ErrBusy = errors.New("blob: upload busy")
)

// OffsetError is ErrOffset with the offset the store holds.
type OffsetError struct {
	// Want is the number of bytes held: the offset to resume from.
	Want int64
}

func (e *OffsetError) Error() string {
	return fmt.Sprintf("blob: upload offset mismatch: %d bytes held", e.Want)
}

// Unwrap returns ErrOffset.
func (e *OffsetError) Unwrap() error { return ErrOffset }
