package crdt

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrTooLarge: outside bytes that ask a decoder for more than Limits allow
// (too deep, too long, too many values). Callers may answer it differently
// from ErrMalformed, e.g. with 413 rather than 400.
var ErrTooLarge = errors.New("crdt: too large")

// Limits bound what a decoder of outside bytes may be asked to build.
// A zero or negative field means that field of DefaultLimits.
type Limits struct {
	// MaxDepth is the deepest nesting of arrays and maps; a top-level
	// array is at depth 1.
	MaxDepth int
	// MaxLen is the most elements of one array, entries of one map, or
	// bytes of one str, bin or ext.
	MaxLen int
	// MaxItems is the most values in the document in all, counting every
	// map key and value, array element and the top value itself.
	MaxItems int
}

// DefaultLimits are the limits UnmarshalOp and UnmarshalRecord apply. They
// are far above any real op or record state (a record of 200 fields with
// long logs is a few thousand values, nesting about 6 deep).
var DefaultLimits = Limits{MaxDepth: 32, MaxLen: 1 << 20, MaxItems: 1 << 20}

func (l Limits) orDefault() Limits {
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultLimits.MaxDepth
	}
	if l.MaxLen <= 0 {
		l.MaxLen = DefaultLimits.MaxLen
	}
	if l.MaxItems <= 0 {
		l.MaxItems = DefaultLimits.MaxItems
	}
	return l
}

// CheckLimits walks exactly one msgpack value in b, iteratively and without
// allocating per element, and checks that decoding it cannot be made to
// allocate far more than len(b) or recurse without bound. It returns an
// error wrapping ErrMalformed if b is empty, truncated, has bytes after the
// value, uses the never-used type code 0xc1, or declares a str, bin, ext,
// array or map longer than the bytes that remain; and an error wrapping
// ErrTooLarge if the value nests deeper than l.MaxDepth, declares a length
// over l.MaxLen, or holds more than l.MaxItems values in all.
//
// Call it on request bodies before handing them to a msgpack decoder:
// msgpack/v5 preallocates a slice of whatever length a prefix declares, so
// five bytes can otherwise ask for gigabytes, and it recurses on nesting.
func CheckLimits(b []byte, l Limits) error {
	end, err := scan(b, 0, l.orDefault())
	if err != nil {
		return err
	}
	if end != len(b) {
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(b)-end)
	}
	return nil
}

// scan walks the one msgpack value that starts at b[start] and returns the
// offset just past it, checking it as CheckLimits does. l must have no
// zero fields.
func scan(b []byte, start int, l Limits) (int, error) {
	// pending[i] counts the values still to read in the container at depth
	// i+1. Without it the scanner would not know when a container ends;
	// it grows only with depth, which MaxDepth bounds.
	var small [16]uint64
	pending := small[:0]
	items := 0
	p := start
	for {
		// Close every container that has read all its values.
		for len(pending) > 0 && pending[len(pending)-1] == 0 {
			pending = pending[:len(pending)-1]
		}
		if len(pending) == 0 && items > 0 {
			break
		}
		if len(pending) > 0 {
			pending[len(pending)-1]--
		}
		items++
		if items > l.MaxItems {
			return 0, fmt.Errorf("%w: more than %d values", ErrTooLarge, l.MaxItems)
		}
		if p >= len(b) {
			return 0, fmt.Errorf("%w: truncated at byte %d", ErrMalformed, p)
		}
		c := b[p]
		p++
		var (
			skip      uint64 // bytes of payload to skip
			children  uint64 // values inside, for arrays and maps
			container bool
			lenBytes  int // bytes of length prefix for str/bin/ext/array/map
		)
		switch {
		case c <= 0x7f || c >= 0xe0: // positive and negative fixint
		case c <= 0x8f: // fixmap
			container, children = true, uint64(c&0x0f)
			if err := checkLen(children, l, p, len(b), 2); err != nil {
				return 0, err
			}
			children *= 2
		case c <= 0x9f: // fixarray
			container, children = true, uint64(c&0x0f)
			if err := checkLen(children, l, p, len(b), 1); err != nil {
				return 0, err
			}
		case c <= 0xbf: // fixstr
			if skip = uint64(c & 0x1f); skip > uint64(l.MaxLen) {
				return 0, fmt.Errorf("%w: %d-byte string at byte %d (max %d)", ErrTooLarge, skip, p, l.MaxLen)
			}
		default:
			switch c {
			case 0xc0, 0xc2, 0xc3: // nil, false, true
			case 0xc1:
				return 0, fmt.Errorf("%w: never-used type code 0xc1 at byte %d", ErrMalformed, p-1)
			case 0xc4, 0xd9: // bin8, str8
				lenBytes = 1
			case 0xc5, 0xda: // bin16, str16
				lenBytes = 2
			case 0xc6, 0xdb: // bin32, str32
				lenBytes = 4
			case 0xc7, 0xc8, 0xc9: // ext8, ext16, ext32: length, type, data
				lenBytes = 1 << (c - 0xc7)
			case 0xca, 0xce, 0xd2: // float32, uint32, int32
				skip = 4
			case 0xcb, 0xcf, 0xd3: // float64, uint64, int64
				skip = 8
			case 0xcc, 0xd0: // uint8, int8
				skip = 1
			case 0xcd, 0xd1: // uint16, int16
				skip = 2
			case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16: type, data
				skip = 1 + 1<<(c-0xd4)
			case 0xdc, 0xde: // array16, map16
				container, lenBytes = true, 2
			case 0xdd, 0xdf: // array32, map32
				container, lenBytes = true, 4
			}
		}
		if lenBytes > 0 {
			if len(b)-p < lenBytes {
				return 0, fmt.Errorf("%w: truncated length at byte %d", ErrMalformed, p)
			}
			var n uint64
			switch lenBytes {
			case 1:
				n = uint64(b[p])
			case 2:
				n = uint64(binary.BigEndian.Uint16(b[p:]))
			case 4:
				n = uint64(binary.BigEndian.Uint32(b[p:]))
			}
			p += lenBytes
			switch {
			case c == 0xdc || c == 0xdd: // arrays: each element is at least a byte
				if err := checkLen(n, l, p, len(b), 1); err != nil {
					return 0, err
				}
				children = n
			case c == 0xde || c == 0xdf: // maps: each entry at least two
				if err := checkLen(n, l, p, len(b), 2); err != nil {
					return 0, err
				}
				children = 2 * n
			case c >= 0xc7 && c <= 0xc9: // ext: the type byte, then n bytes
				if n > uint64(l.MaxLen) {
					return 0, fmt.Errorf("%w: ext of %d bytes at byte %d (max %d)", ErrTooLarge, n, p, l.MaxLen)
				}
				skip = 1 + n
			default: // str, bin
				if n > uint64(l.MaxLen) {
					return 0, fmt.Errorf("%w: %d-byte string at byte %d (max %d)", ErrTooLarge, n, p, l.MaxLen)
				}
				skip = n
			}
		}
		if skip > uint64(len(b)-p) {
			return 0, fmt.Errorf("%w: value at byte %d needs %d bytes, %d remain", ErrMalformed, p, skip, len(b)-p)
		}
		p += int(skip)
		if container {
			if len(pending) >= l.MaxDepth {
				return 0, fmt.Errorf("%w: nested deeper than %d at byte %d", ErrTooLarge, l.MaxDepth, p)
			}
			pending = append(pending, children)
		}
	}
	return p, nil
}

// shortEnd returns the offset just past the value at b[p] if it is one of
// the commonest op values, a string of fewer than 256 bytes or a scalar of
// one byte (which scan would pass at any limits), and 0 otherwise: then
// call scan.
func shortEnd(b []byte, p int) int {
	if p >= len(b) {
		return 0
	}
	c := b[p]
	end := 0
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3: // fixints, nil, bools
		end = p + 1
	case c&0xe0 == 0xa0: // fixstr
		end = p + 1 + int(c&0x1f)
	case c == 0xd9 && p+1 < len(b): // str8
		end = p + 2 + int(b[p+1])
	}
	if end > len(b) {
		return 0
	}
	return end
}

// checkLen checks a container of n elements, each at least minBytes long,
// declared at byte p of a document of size bytes.
func checkLen(n uint64, l Limits, p, size, minBytes int) error {
	if n > uint64(l.MaxLen) {
		return fmt.Errorf("%w: %d elements at byte %d (max %d)", ErrTooLarge, n, p, l.MaxLen)
	}
	if n*uint64(minBytes) > uint64(size-p) {
		return fmt.Errorf("%w: %d elements at byte %d, only %d bytes remain", ErrMalformed, n, p, size-p)
	}
	return nil
}

// MaxRecordIDLen is the longest record ID, in bytes.
const MaxRecordIDLen = 64

// ErrBadRecordID: a record ID outside the documented character set or
// length (see ValidateRecordID).
var ErrBadRecordID = errors.New("crdt: invalid record id")

// ValidateRecordID checks a record ID: 1 to MaxRecordIDLen bytes, each an
// ASCII letter, digit, '-', '_' or '.'. UUIDs (36 bytes) and the SDK's
// 32 hex digits fit. Every stored record must be nameable in a URL path,
// in JSON and in a log line exactly as stored, so that review, erasure and
// the console can reach it; bytes outside this set (invalid UTF-8,
// slashes, spaces, control characters) would not survive one of those.
// Errors wrap ErrBadRecordID.
//
// Decoders do not call it (a record stored before the rule must stay
// readable); the server's admission of a pushed op and the SDK's writes
// do.
func ValidateRecordID(id string) error {
	if len(id) == 0 || len(id) > MaxRecordIDLen {
		return fmt.Errorf("%w: %d bytes, want 1 to %d", ErrBadRecordID, len(id), MaxRecordIDLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%w: byte %#02x at %d; use ASCII letters, digits, '-', '_' or '.'", ErrBadRecordID, c, i)
		}
	}
	return nil
}

// ValueEnd returns the end offset in b of the one msgpack value that
// starts at b[start], walked and checked as CheckLimits walks a whole
// document (against l, each value counted on its own). A decoder uses it
// to take a value's raw bytes as a slice of b without decoding them.
func ValueEnd(b []byte, start int, l Limits) (int, error) {
	return scan(b, start, l.orDefault())
}
