package blob

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// Encryption at rest. With Config.EncryptionKey (the key that encrypts
// the record and auth stores), every file a Store writes, unfinished or
// complete, is AES-CTR ciphertext behind a 16-byte random IV:
//
//	<iv: 16 bytes> <ciphertext: the file's bytes XOR the AES-CTR keystream from iv>
//
// and its metadata says "enc": true. CTR keeps what the store needs: bytes
// appended at any offset (resumable uploads fsync what arrived), and reads
// from any offset (Range requests). A fresh IV per upload means a keystream
// is never reused, even for an upload discarded and started again. CTR is
// not authenticated on its own: a complete blob's integrity is its name,
// the SHA-256 of the plaintext, checked by the store on completion and on
// import, and by every device on download. Files written before a key was
// configured stay plaintext ("enc" absent) and stay readable; a store
// opened without the key refuses to serve encrypted ones.
const ivLen = aes.BlockSize

// ErrNoKey: the blob is encrypted and the store was opened without the key.
var ErrNoKey = errors.New("blob: the file is encrypted and no encryption key is configured")

func newBlock(key []byte) (cipher.Block, error) {
	switch len(key) {
	case 0:
		return nil, nil
	case 16, 24, 32:
		return aes.NewCipher(key)
	}
	return nil, fmt.Errorf("blob: encryption key of %d bytes: want 16, 24 or 32", len(key))
}

// ctrAt returns the keystream of iv positioned at byte off of the
// plaintext.
func ctrAt(b cipher.Block, iv []byte, off int64) cipher.Stream {
	ctr := make([]byte, ivLen)
	copy(ctr, iv)
	// Add off/16 to the IV as a 128-bit big-endian counter.
	blocks := uint64(off / ivLen)
	lo := binary.BigEndian.Uint64(ctr[8:])
	sum := lo + blocks
	binary.BigEndian.PutUint64(ctr[8:], sum)
	if sum < lo {
		hi := binary.BigEndian.Uint64(ctr[:8])
		binary.BigEndian.PutUint64(ctr[:8], hi+1)
	}
	s := cipher.NewCTR(b, ctr)
	if skip := int(off % ivLen); skip > 0 {
		var junk [ivLen]byte
		s.XORKeyStream(junk[:skip], junk[:skip])
	}
	return s
}

// newIV returns a random IV for a new file.
func newIV() ([]byte, error) {
	iv := make([]byte, ivLen)
	if _, err := rand.Read(iv); err != nil {
		return nil, fmt.Errorf("blob: iv: %w", err)
	}
	return iv, nil
}

// fileCodec reads and writes a data file's plaintext: at an offset of
// hdr bytes and through the keystream when the file is encrypted, as
// they are when not.
type fileCodec struct {
	block cipher.Block // nil: plaintext
	iv    []byte
}

func (c fileCodec) hdr() int64 {
	if c.block == nil {
		return 0
	}
	return ivLen
}

// codecFor reads the IV of an existing data file described by m.
func (s *Store) codecFor(f *os.File, m meta) (fileCodec, error) {
	if !m.Enc {
		return fileCodec{}, nil
	}
	if s.block == nil {
		return fileCodec{}, ErrNoKey
	}
	iv := make([]byte, ivLen)
	if _, err := f.ReadAt(iv, 0); err != nil {
		return fileCodec{}, fmt.Errorf("blob: read iv: %w", err)
	}
	return fileCodec{block: s.block, iv: iv}, nil
}

// plainWriter writes plaintext at increasing offsets of a data file opened
// without O_APPEND.
type plainWriter struct {
	f   *os.File
	c   fileCodec
	off int64 // plaintext offset
	buf []byte
}

func (w *plainWriter) Write(p []byte) (int, error) {
	b := p
	if w.c.block != nil {
		w.buf = append(w.buf[:0], p...)
		ctrAt(w.c.block, w.c.iv, w.off).XORKeyStream(w.buf, w.buf)
		b = w.buf
	}
	n, err := w.f.WriteAt(b, w.c.hdr()+w.off)
	w.off += int64(n)
	return n, err
}

// File is a complete blob's plaintext, for reading from any offset.
type File interface {
	io.ReadSeeker
	io.ReaderAt
	io.Closer
}

// plainFile reads a data file's plaintext.
type plainFile struct {
	f    *os.File
	c    fileCodec
	size int64 // plaintext bytes
	pos  int64
}

func (p *plainFile) ReadAt(b []byte, off int64) (int, error) {
	if off >= p.size {
		return 0, io.EOF
	}
	if rest := p.size - off; int64(len(b)) > rest {
		b = b[:rest]
	}
	n, err := p.f.ReadAt(b, p.c.hdr()+off)
	if p.c.block != nil && n > 0 {
		ctrAt(p.c.block, p.c.iv, off).XORKeyStream(b[:n], b[:n])
	}
	if err == nil && off+int64(n) == p.size {
		err = io.EOF
	}
	return n, err
}

func (p *plainFile) Read(b []byte) (int, error) {
	n, err := p.ReadAt(b, p.pos)
	p.pos += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (p *plainFile) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += p.pos
	case io.SeekEnd:
		off += p.size
	default:
		return 0, errors.New("blob: seek: bad whence")
	}
	if off < 0 {
		return 0, errors.New("blob: seek: negative position")
	}
	p.pos = off
	return off, nil
}

func (p *plainFile) Close() error { return p.f.Close() }

// openPlain opens a data file described by m for reading its plaintext.
func (s *Store) openPlain(path string, m meta) (*plainFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	c, err := s.codecFor(f, m)
	if err != nil {
		f.Close()
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blob: %w", err)
	}
	return &plainFile{f: f, c: c, size: max(fi.Size()-c.hdr(), 0)}, nil
}
