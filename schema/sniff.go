package schema

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
)

// SniffLen is how many leading bytes SniffAttachment looks at.
const SniffLen = 512

// ErrAttachmentType: a file's bytes are not an allowed attachment type.
var ErrAttachmentType = errors.New("not an allowed attachment type")

// heifBrands are the ftyp major brands of HEIC/HEIF images.
var heifBrands = [][]byte{[]byte("heic"), []byte("heix"), []byte("hevc"), []byte("hevx"), []byte("heim"), []byte("heis"), []byte("mif1"), []byte("msf1")}

// executableMagic are the leading bytes of programs and archives that
// carry programs (Windows PE, ELF, Mach-O, scripts, zip/jar/apk).
var executableMagic = [][]byte{
	[]byte("MZ"), []byte("\x7fELF"), []byte("#!"),
	{0xfe, 0xed, 0xfa, 0xce}, {0xfe, 0xed, 0xfa, 0xcf}, {0xce, 0xfa, 0xed, 0xfe}, {0xcf, 0xfa, 0xed, 0xfe}, {0xca, 0xfe, 0xba, 0xbe},
	[]byte("PK\x03\x04"),
}

// SniffAttachment returns the content type of a file from its first bytes
// (up to SniffLen), one of AttachmentTypes: JPEG, PNG, HEIC (an ISO BMFF
// ftyp box with a HEIF brand) or PDF, each checked by its magic bytes as
// well as net/http.DetectContentType. Anything else, and executables in
// particular, is ErrAttachmentType. Server and device sniff alike.
func SniffAttachment(head []byte) (string, error) {
	for _, m := range executableMagic {
		if bytes.HasPrefix(head, m) {
			return "", fmt.Errorf("%w: the file is an executable or archive; only JPEG, PNG, HEIC and PDF are accepted", ErrAttachmentType)
		}
	}
	if len(head) >= 12 && string(head[4:8]) == "ftyp" {
		for _, b := range heifBrands {
			if bytes.Equal(head[8:12], b) {
				return "image/heic", nil
			}
		}
		return "", fmt.Errorf("%w: the file is an ISO media file that is not HEIC", ErrAttachmentType)
	}
	ct := http.DetectContentType(head)
	switch {
	case ct == "image/jpeg" && bytes.HasPrefix(head, []byte{0xff, 0xd8, 0xff}):
		return ct, nil
	case ct == "image/png" && bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")):
		return ct, nil
	case ct == "application/pdf" && bytes.HasPrefix(head, []byte("%PDF-")):
		return ct, nil
	}
	return "", fmt.Errorf("%w: the file is %s; only JPEG, PNG, HEIC and PDF are accepted", ErrAttachmentType, ct)
}
