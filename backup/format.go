package backup

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"
)

// FormatVersion is the version of the file layout this package writes
// (see FORMAT.md). Readers refuse a file with a higher version.
const FormatVersion uint32 = 1

// Magic strings at the start and end of every backup file.
const (
	magicStart = "DSBACKUP"
	magicEnd   = "DSBAKEND"
)

// Record markers inside the body.
const (
	tagSection = 'S'
	tagItem    = 'I'
	tagEnd     = 'E'
	tagTrailer = 'T'
)

// Bounds a reader holds a file to, so a corrupt length never makes it
// allocate more than this.
const (
	maxHeader   = 1 << 20
	maxKey      = 1 << 16 // Badger's own key limit is 65,000 bytes
	maxValue    = 1 << 30 // Badger's value limit
	maxName     = 255
	maxSections = 16
)

// Errors a caller may branch on (errors.Is).
var (
	// ErrNotBackup: the file does not start with the backup magic.
	ErrNotBackup = errors.New("backup: not a Doorstep backup file")
	// ErrNewerFormat: the file was written by a newer Doorstep.
	ErrNewerFormat = errors.New("backup: written by a newer format version")
	// ErrCorrupt: a checksum, count or length does not match.
	ErrCorrupt = errors.New("backup: file is corrupt")
	// ErrIncomplete: the file ends before its trailer (a backup that was
	// interrupted, or a truncated copy).
	ErrIncomplete = errors.New("backup: file is incomplete")
)

// Header is the self-description at the start of a file, written before
// any data.
type Header struct {
	Format    uint32    `json:"format"`
	CreatedAt time.Time `json:"created_at"`
	// ServerID is the records store's server replica ID (hex).
	ServerID string `json:"server_id"`
	// Epoch is the records store's epoch ID (hex) when the backup was taken.
	Epoch string `json:"epoch,omitempty"`
	// LogPosition is the last log position in the records snapshot: every
	// change at or below it is in the file, none above.
	LogPosition uint64 `json:"log_position"`
	// Layouts maps a section to the layout version of the store it was
	// taken from (records: store.CurrentVersion).
	Layouts map[string]uint32 `json:"layouts"`
	// Sections are the section names in file order.
	Sections []string `json:"sections"`
	// Software names the program that wrote the file.
	Software string `json:"software,omitempty"`
}

// SectionSum is what the trailer records about one section.
type SectionSum struct {
	Name  string `json:"name"`
	Items int64  `json:"items"`
	Bytes int64  `json:"bytes"`
	// SHA256 is the hex SHA-256 of the section's item encodings in file
	// order (keys ascending), which is also what Digest computes over a
	// restored database.
	SHA256 string `json:"sha256"`
}

// Trailer ends a complete file.
type Trailer struct {
	Sections []SectionSum `json:"sections"`
	// FinishedAt is when the last section was written.
	FinishedAt time.Time `json:"finished_at"`
}

// Manifest is what Verify learns about a complete, intact file.
type Manifest struct {
	Header  Header
	Trailer Trailer
	// Size is the file's length in bytes; SHA256 its whole-file hash (hex).
	Size   int64
	SHA256 string
}

// Section returns the trailer's entry for name.
func (m *Manifest) Section(name string) (SectionSum, bool) {
	for _, s := range m.Trailer.Sections {
		if s.Name == name {
			return s, true
		}
	}
	return SectionSum{}, false
}

// Items is the total item count over all sections.
func (m *Manifest) Items() int64 {
	var n int64
	for _, s := range m.Trailer.Sections {
		n += s.Items
	}
	return n
}

// Item is one key-value pair of a section.
type Item struct {
	Key, Value []byte
	UserMeta   byte
	ExpiresAt  uint64 // Unix seconds; 0 means never
}

// appendItem appends the encoding of it without its tag.
func appendItem(b []byte, it *Item) []byte {
	b = binary.AppendUvarint(b, uint64(len(it.Key)))
	b = append(b, it.Key...)
	b = binary.AppendUvarint(b, uint64(len(it.Value)))
	b = append(b, it.Value...)
	b = append(b, it.UserMeta)
	return binary.AppendUvarint(b, it.ExpiresAt)
}

// encoder writes the body and hashes every byte written.
type encoder struct {
	w    *bufio.Writer
	file hash.Hash
	n    int64
	buf  []byte
	sum  []byte // whole-file checksum, once the trailer is written
}

func newEncoder(w io.Writer) *encoder {
	return &encoder{w: bufio.NewWriterSize(w, 256<<10), file: sha256.New()}
}

func (e *encoder) write(b []byte) error {
	e.file.Write(b)
	e.n += int64(len(b))
	_, err := e.w.Write(b)
	return err
}

func (e *encoder) header(h *Header) error {
	js, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("backup: header: %w", err)
	}
	b := append([]byte(magicStart), 0, 0, 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[8:], FormatVersion)
	binary.BigEndian.PutUint32(b[12:], uint32(len(js)))
	return e.write(append(b, js...))
}

func (e *encoder) trailer(t *Trailer) error {
	js, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("backup: trailer: %w", err)
	}
	b := []byte{tagTrailer, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(len(js)))
	if err := e.write(append(b, js...)); err != nil {
		return err
	}
	e.sum = e.file.Sum(nil)
	if err := e.write(append(bytes.Clone(e.sum), magicEnd...)); err != nil {
		return err
	}
	return e.w.Flush()
}

// decoder reads the body, hashing every byte read.
type decoder struct {
	r    *bufio.Reader
	file hash.Hash
	n    int64
}

func newDecoder(r io.Reader) *decoder {
	return &decoder{r: bufio.NewReaderSize(r, 256<<10), file: sha256.New()}
}

func (d *decoder) full(b []byte) error {
	if _, err := io.ReadFull(d.r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: ends after %d bytes", ErrIncomplete, d.n)
		}
		return fmt.Errorf("backup: read: %w", err)
	}
	d.file.Write(b)
	d.n += int64(len(b))
	return nil
}

func (d *decoder) byte() (byte, error) {
	var b [1]byte
	err := d.full(b[:])
	return b[0], err
}

func (d *decoder) uvarint() (uint64, []byte, error) {
	var raw []byte
	for i := 0; i < binary.MaxVarintLen64; i++ {
		c, err := d.byte()
		if err != nil {
			return 0, nil, err
		}
		raw = append(raw, c)
		if c < 0x80 {
			v, n := binary.Uvarint(raw)
			if n <= 0 {
				break
			}
			return v, raw, nil
		}
	}
	return 0, nil, fmt.Errorf("%w: bad length at byte %d", ErrCorrupt, d.n)
}

func (d *decoder) header() (Header, error) {
	var h Header
	b := make([]byte, 16)
	if err := d.full(b); err != nil {
		if errors.Is(err, ErrIncomplete) {
			return h, ErrNotBackup
		}
		return h, err
	}
	if string(b[:8]) != magicStart {
		return h, ErrNotBackup
	}
	if v := binary.BigEndian.Uint32(b[8:]); v > FormatVersion {
		return h, fmt.Errorf("%w: file format %d, this build reads up to %d", ErrNewerFormat, v, FormatVersion)
	} else if v == 0 {
		return h, fmt.Errorf("%w: format version 0", ErrCorrupt)
	}
	n := binary.BigEndian.Uint32(b[12:])
	if n > maxHeader {
		return h, fmt.Errorf("%w: header of %d bytes", ErrCorrupt, n)
	}
	js := make([]byte, n)
	if err := d.full(js); err != nil {
		return h, err
	}
	if err := json.Unmarshal(js, &h); err != nil {
		return h, fmt.Errorf("%w: header: %v", ErrCorrupt, err)
	}
	if len(h.Sections) > maxSections {
		return h, fmt.Errorf("%w: %d sections", ErrCorrupt, len(h.Sections))
	}
	return h, nil
}

// Read reads a whole backup from r, checking every checksum and count, and
// calls fn (if not nil) for each item in file order. fn's Item aliases a
// buffer reused for the next item. An error from fn stops the read.
// Without fn, Read is Verify.
func Read(r io.Reader, fn func(section string, it *Item) error) (*Manifest, error) {
	d := newDecoder(r)
	h, err := d.header()
	if err != nil {
		return nil, err
	}
	m := &Manifest{Header: h}
	var sums []SectionSum
	var key, val []byte
	for i := 0; ; i++ {
		tag, err := d.byte()
		if err != nil {
			return nil, err
		}
		if tag == tagTrailer {
			break
		}
		if tag != tagSection || i >= len(h.Sections) {
			return nil, fmt.Errorf("%w: unexpected byte %#x at %d", ErrCorrupt, tag, d.n-1)
		}
		nl, err := d.byte()
		if err != nil {
			return nil, err
		}
		name := make([]byte, nl)
		if err := d.full(name); err != nil {
			return nil, err
		}
		if string(name) != h.Sections[i] {
			return nil, fmt.Errorf("%w: section %q where the header names %q", ErrCorrupt, name, h.Sections[i])
		}
		sum := SectionSum{Name: string(name)}
		sec := sha256.New()
		var prev []byte
		for {
			tag, err := d.byte()
			if err != nil {
				return nil, err
			}
			if tag == tagEnd {
				break
			}
			if tag != tagItem {
				return nil, fmt.Errorf("%w: unexpected byte %#x at %d in section %s", ErrCorrupt, tag, d.n-1, name)
			}
			start := d.n
			kl, raw, err := d.uvarint()
			if err != nil {
				return nil, err
			}
			if kl == 0 || kl > maxKey {
				return nil, fmt.Errorf("%w: key of %d bytes in section %s", ErrCorrupt, kl, name)
			}
			sec.Write(raw)
			prev = append(prev[:0], key...)
			key = grow(key, int(kl))
			if err := d.full(key); err != nil {
				return nil, err
			}
			sec.Write(key)
			if sum.Items > 0 && bytes.Compare(prev, key) >= 0 {
				return nil, fmt.Errorf("%w: keys out of order in section %s", ErrCorrupt, name)
			}
			vl, raw, err := d.uvarint()
			if err != nil {
				return nil, err
			}
			if vl > maxValue {
				return nil, fmt.Errorf("%w: value of %d bytes in section %s", ErrCorrupt, vl, name)
			}
			sec.Write(raw)
			val = grow(val, int(vl))
			if err := d.full(val); err != nil {
				return nil, err
			}
			sec.Write(val)
			um, err := d.byte()
			if err != nil {
				return nil, err
			}
			sec.Write([]byte{um})
			exp, raw, err := d.uvarint()
			if err != nil {
				return nil, err
			}
			sec.Write(raw)
			sum.Items++
			sum.Bytes += d.n - start
			if fn != nil {
				if err := fn(sum.Name, &Item{Key: key, Value: val, UserMeta: um, ExpiresAt: exp}); err != nil {
					return nil, err
				}
			}
		}
		sum.SHA256 = hex.EncodeToString(sec.Sum(nil))
		sums = append(sums, sum)
	}
	lb := make([]byte, 4)
	if err := d.full(lb); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(lb)
	if n > maxHeader {
		return nil, fmt.Errorf("%w: trailer of %d bytes", ErrCorrupt, n)
	}
	js := make([]byte, n)
	if err := d.full(js); err != nil {
		return nil, err
	}
	want := d.file.Sum(nil)
	tail := make([]byte, sha256.Size+len(magicEnd))
	if _, err := io.ReadFull(d.r, tail); err != nil {
		return nil, fmt.Errorf("%w: no end checksum", ErrIncomplete)
	}
	if string(tail[sha256.Size:]) != magicEnd {
		return nil, fmt.Errorf("%w: no end marker", ErrCorrupt)
	}
	if !bytes.Equal(tail[:sha256.Size], want) {
		return nil, fmt.Errorf("%w: whole-file SHA-256 does not match", ErrCorrupt)
	}
	if _, err := d.r.ReadByte(); err != io.EOF {
		return nil, fmt.Errorf("%w: bytes after the end marker", ErrCorrupt)
	}
	if err := json.Unmarshal(js, &m.Trailer); err != nil {
		return nil, fmt.Errorf("%w: trailer: %v", ErrCorrupt, err)
	}
	if len(m.Trailer.Sections) != len(sums) || len(sums) != len(h.Sections) {
		return nil, fmt.Errorf("%w: trailer lists %d sections, file has %d", ErrCorrupt, len(m.Trailer.Sections), len(sums))
	}
	for i, s := range sums {
		if m.Trailer.Sections[i] != s {
			return nil, fmt.Errorf("%w: section %s: trailer says %d items sha256 %s, file has %d items sha256 %s",
				ErrCorrupt, s.Name, m.Trailer.Sections[i].Items, m.Trailer.Sections[i].SHA256, s.Items, s.SHA256)
		}
	}
	m.Size = d.n + int64(len(tail))
	m.SHA256 = hex.EncodeToString(want)
	return m, nil
}

// Verify reads a whole backup from r and checks it without loading it.
func Verify(r io.Reader) (*Manifest, error) { return Read(r, nil) }

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}
