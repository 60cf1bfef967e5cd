package blob

import (
	"context"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	gosync "sync"
	"time"

	"github.com/doorstep-health/doorstep/schema"
)

// LayoutVersion is the version of the on-disk layout (see the package
// documentation).
const LayoutVersion = 1

const versionLine = "doorstep-blobs 1\n"

// Default limits.
const (
	DefaultMaxFileSize = 32 << 20
	DefaultTeamQuota   = 20 << 30
	// DefaultUploadTTL is how long an unfinished upload may go without a
	// byte arriving before the sweeper removes it: long enough for a
	// tablet that is off-line for a week of visits to resume.
	DefaultUploadTTL = 7 * 24 * time.Hour
	// maxRefs bounds the records one blob lists.
	maxRefs = 1000
	// lockWait is how long a write waits for another write of the same
	// upload (a request cut by the network whose handler is still
	// draining) before ErrBusy.
	lockWait = 10 * time.Second
)

// Config configures a Store.
type Config struct {
	// Dir is the blob directory (the server uses DataDir/blobs).
	Dir string
	// MaxFileSize bounds one file in bytes; DefaultMaxFileSize if zero.
	MaxFileSize int64
	// TeamQuota bounds a team's stored and reserved bytes;
	// DefaultTeamQuota if zero.
	TeamQuota int64
	// UploadTTL is how long an unfinished upload is kept after its last
	// write; DefaultUploadTTL if zero. Expired uploads are removed by a
	// sweeper goroutine the Store owns (every SweepEvery; Close stops it)
	// and their reservation against the team's quota released; a device
	// then starts the upload again from byte 0.
	UploadTTL time.Duration
	// SweepEvery is how often the sweeper runs; UploadTTL/4, at most an
	// hour, if zero; negative: no sweeper (call Sweep).
	SweepEvery time.Duration
	// Now is the clock for creation times and upload expiry; time.Now if
	// nil.
	Now func() time.Time
	// Logger receives the sweeper's reports; slog.Default() if nil.
	Logger *slog.Logger
	// EncryptionKey, if set (16, 24 or 32 bytes), encrypts every file the
	// store writes with AES-CTR (crypt.go); the server passes the key of
	// its record store. Files written without it stay readable.
	EncryptionKey []byte
}

// Ref names a record a blob is attached to.
type Ref struct {
	Collection string `json:"collection"`
	ID         string `json:"id"`
}

// Info describes a blob or an unfinished upload.
type Info struct {
	SHA256 string
	// Size is the file's full size.
	Size int64
	// Offset is the number of bytes held: Size when Complete.
	Offset int64
	// Complete: the bytes are all held and hash to SHA256.
	Complete bool
	// ContentType is the sniffed type, once enough bytes are held.
	ContentType string
}

type meta struct {
	Size        int64     `json:"size"`
	ContentType string    `json:"content_type,omitempty"`
	Refs        []Ref     `json:"refs"`
	Created     time.Time `json:"created"`
	// Enc: the data file is encrypted (crypt.go).
	Enc bool `json:"enc,omitempty"`
}

// Store is a blob directory. It is safe for concurrent use.
type Store struct {
	cfg Config

	mu    gosync.Mutex
	usage map[string]int64 // team → stored bytes + declared sizes of uploads
	locks map[string]*keyLock

	block cipher.Block // nil: files are written in plaintext

	stop      chan struct{} // closed by Close
	swept     chan struct{} // closed when the sweeper has returned
	closeOnce gosync.Once
}

// Open opens (creating if needed) the blob directory and counts each
// team's usage.
func Open(cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		return nil, errors.New("blob: Dir is required")
	}
	if cfg.MaxFileSize <= 0 {
		cfg.MaxFileSize = DefaultMaxFileSize
	}
	if cfg.TeamQuota <= 0 {
		cfg.TeamQuota = DefaultTeamQuota
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.UploadTTL <= 0 {
		cfg.UploadTTL = DefaultUploadTTL
	}
	if cfg.SweepEvery == 0 {
		cfg.SweepEvery = min(cfg.UploadTTL/4, time.Hour)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	block, err := newBlock(cfg.EncryptionKey)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("blob: open: %w", err)
	}
	vf := filepath.Join(cfg.Dir, "VERSION")
	switch b, err := os.ReadFile(vf); {
	case errors.Is(err, fs.ErrNotExist):
		if err := writeAtomic(vf, []byte(versionLine)); err != nil {
			return nil, fmt.Errorf("blob: open: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("blob: open: %w", err)
	case string(b) != versionLine:
		return nil, fmt.Errorf("blob: open: layout %q in %s, this build reads %q", strings.TrimSpace(string(b)), vf, strings.TrimSpace(versionLine))
	}
	s := &Store{cfg: cfg, block: block, usage: map[string]int64{}, locks: map[string]*keyLock{}, stop: make(chan struct{}), swept: make(chan struct{})}
	ents, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("blob: open: %w", err)
	}
	for _, e := range ents {
		team, ok := teamOfDir(e.Name())
		if !e.IsDir() || !ok {
			continue
		}
		var n int64
		err := filepath.WalkDir(filepath.Join(cfg.Dir, e.Name()), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
				return err
			}
			m, err := readMeta(p)
			if err != nil {
				return err
			}
			n += m.Size
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("blob: open: count %s: %w", e.Name(), err)
		}
		s.usage[team] = n
	}
	if cfg.SweepEvery > 0 {
		go s.sweeper()
	} else {
		close(s.swept)
	}
	return s, nil
}

// Close stops the sweeper and waits for it. The Store must not be used
// after. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.swept
	return nil
}

// MaxFileSize returns the per-file limit.
func (s *Store) MaxFileSize() int64 { return s.cfg.MaxFileSize }

// Usage returns a team's stored bytes plus the declared sizes of its
// unfinished uploads.
func (s *Store) Usage(team string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.usage[team]
}

func teamDirName(team string) string { return "t-" + hex.EncodeToString([]byte(team)) }

func teamOfDir(name string) (string, bool) {
	h, ok := strings.CutPrefix(name, "t-")
	if !ok {
		return "", false
	}
	b, err := hex.DecodeString(h)
	return string(b), err == nil
}

func (s *Store) objectPath(team, sum string) string {
	return filepath.Join(s.cfg.Dir, teamDirName(team), "objects", sum[:2], sum)
}

func (s *Store) uploadPath(team, sum string) string {
	return filepath.Join(s.cfg.Dir, teamDirName(team), "uploads", sum+".part")
}

func checkArgs(team, sum string) error {
	if team == "" || len(team) > 128 {
		return fmt.Errorf("%w: team", ErrBadRequest)
	}
	if !schema.IsSHA256(sum) {
		return fmt.Errorf("%w: %q is not a SHA-256 in 64 lowercase hex digits", ErrBadRequest, clip(sum))
	}
	return nil
}

// Stat describes the team's blob or unfinished upload named sum, or
// returns ErrNotFound. It waits for a write of the upload in progress (a
// request whose connection was cut may still be draining), so the offset
// it reports is the one to resume from.
func (s *Store) Stat(ctx context.Context, team, sum string) (Info, error) {
	if err := checkArgs(team, sum); err != nil {
		return Info{}, err
	}
	unlock, err := s.lock(ctx, team+"\x00"+sum)
	if err != nil {
		return Info{}, err
	}
	defer unlock()
	return s.stat(team, sum)
}

func (s *Store) stat(team, sum string) (Info, error) {
	op := s.objectPath(team, sum)
	if m, err := readMeta(op + ".json"); err == nil {
		return Info{SHA256: sum, Size: m.Size, Offset: m.Size, Complete: true, ContentType: m.ContentType}, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Info{}, err
	}
	up := s.uploadPath(team, sum)
	m, err := readMeta(strings.TrimSuffix(up, ".part") + ".json")
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, ErrNotFound
	}
	if err != nil {
		return Info{}, err
	}
	fi, err := os.Stat(up)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("blob: stat: %w", err)
	}
	var off int64
	if fi != nil {
		off = fi.Size()
		if m.Enc {
			off = max(off-ivLen, 0)
		}
	}
	return Info{SHA256: sum, Size: m.Size, Offset: off, ContentType: m.ContentType}, nil
}

// lock takes the per-upload lock, waiting up to lockWait. An entry stays
// in the map while anyone holds or waits for it, so two callers never hold
// different channels for one key.
func (s *Store) lock(ctx context.Context, key string) (func(), error) {
	s.mu.Lock()
	l, ok := s.locks[key]
	if !ok {
		l = &keyLock{ch: make(chan struct{}, 1)}
		s.locks[key] = l
	}
	l.users++
	s.mu.Unlock()
	done := func() {
		s.mu.Lock()
		if l.users--; l.users == 0 {
			delete(s.locks, key)
		}
		s.mu.Unlock()
	}
	t := time.NewTimer(lockWait)
	defer t.Stop()
	select {
	case l.ch <- struct{}{}:
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	case <-t.C:
		done()
		return nil, ErrBusy
	}
	return func() {
		<-l.ch
		done()
	}, nil
}

// keyLock is one upload's lock and the number of its holders and waiters.
type keyLock struct {
	ch    chan struct{}
	users int
}

// Write appends the bytes of r to the team's upload named sum at offset,
// for the record ref, and returns what is then held. size is the file's
// full size; the first Write of an upload reserves it against the team's
// quota. offset must equal the bytes already held (else an *OffsetError
// with the right offset). Bytes read before r fails are kept and fsynced,
// and the error is returned with the Info that counts them. When the last
// byte arrives the hash is checked and the blob becomes complete. Writing
// to a complete blob reads nothing and only records ref (deduplication).
func (s *Store) Write(ctx context.Context, team, sum string, ref Ref, size, offset int64, r io.Reader) (Info, error) {
	if err := checkArgs(team, sum); err != nil {
		return Info{}, err
	}
	if ref.Collection == "" || ref.ID == "" || len(ref.Collection) > 64 || len(ref.ID) > 128 {
		return Info{}, fmt.Errorf("%w: the record the file is attached to (collection/id) is required", ErrBadRequest)
	}
	if size < 1 {
		return Info{}, fmt.Errorf("%w: size %d", ErrBadRequest, size)
	}
	if size > s.cfg.MaxFileSize {
		return Info{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, size, s.cfg.MaxFileSize)
	}
	unlock, err := s.lock(ctx, team+"\x00"+sum)
	if err != nil {
		return Info{}, err
	}
	defer unlock()

	op := s.objectPath(team, sum)
	if m, err := readMeta(op + ".json"); err == nil {
		if m.Size != size {
			return Info{}, fmt.Errorf("%w: the blob is %d bytes, not %d", ErrSizeMismatch, m.Size, size)
		}
		if err := addRef(op+".json", m, ref); err != nil {
			return Info{}, err
		}
		return Info{SHA256: sum, Size: m.Size, Offset: m.Size, Complete: true, ContentType: m.ContentType}, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Info{}, err
	}

	up := s.uploadPath(team, sum)
	mp := strings.TrimSuffix(up, ".part") + ".json"
	m, err := readMeta(mp)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if offset != 0 {
			return Info{}, &OffsetError{Want: 0}
		}
		if err := s.reserve(team, size); err != nil {
			return Info{}, err
		}
		m = meta{Size: size, Refs: []Ref{ref}, Created: s.cfg.Now().UTC(), Enc: s.block != nil}
		if err := os.MkdirAll(filepath.Dir(up), 0o700); err != nil {
			s.release(team, size)
			return Info{}, fmt.Errorf("blob: write: %w", err)
		}
		if err := writeMeta(mp, m); err != nil {
			s.release(team, size)
			return Info{}, err
		}
	case err != nil:
		return Info{}, err
	case m.Size != size:
		return Info{}, fmt.Errorf("%w: the upload was started with %d bytes, not %d", ErrSizeMismatch, m.Size, size)
	default:
		if !slices.Contains(m.Refs, ref) && len(m.Refs) < maxRefs {
			m.Refs = append(m.Refs, ref)
			if err := writeMeta(mp, m); err != nil {
				return Info{}, err
			}
		}
	}

	f, err := os.OpenFile(up, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return Info{}, fmt.Errorf("blob: write: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return Info{}, fmt.Errorf("blob: write: %w", err)
	}
	codec, held, err := s.partCodec(f, fi.Size(), m)
	if err != nil {
		f.Close()
		return Info{}, err
	}
	if offset != held {
		f.Close()
		return Info{}, &OffsetError{Want: held}
	}
	// Read at most the bytes that remain, plus one to detect a body
	// running past the size.
	n, copyErr := io.Copy(&plainWriter{f: f, c: codec, off: held}, io.LimitReader(r, size-held+1))
	over := held+n > size
	if over {
		n = size - held
		if err := f.Truncate(codec.hdr() + size); err != nil {
			f.Close()
			return Info{}, fmt.Errorf("blob: write: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return Info{}, fmt.Errorf("blob: write: sync: %w", err)
	}
	if err := f.Close(); err != nil {
		return Info{}, fmt.Errorf("blob: write: %w", err)
	}
	held += n
	info := Info{SHA256: sum, Size: size, Offset: held, ContentType: m.ContentType}
	if m.ContentType == "" && (held >= SniffLen || held == size) {
		ct, err := s.sniffFile(up, m)
		if err != nil {
			s.discard(team, up, mp, size)
			return Info{SHA256: sum, Size: size}, err
		}
		m.ContentType, info.ContentType = ct, ct
		if err := writeMeta(mp, m); err != nil {
			return info, err
		}
	}
	if over {
		return info, fmt.Errorf("%w: the body runs past the %d bytes of the file", ErrSizeMismatch, size)
	}
	if copyErr != nil {
		return info, fmt.Errorf("blob: write: read body: %w", copyErr)
	}
	if held < size {
		return info, nil
	}
	return s.complete(team, sum, up, mp, m)
}

// complete checks the hash of a fully received upload and moves it into
// objects/, merging refs with a blob completed meanwhile.
func (s *Store) complete(team, sum, up, mp string, m meta) (Info, error) {
	got, err := s.hashFile(up, m)
	if err != nil {
		return Info{}, err
	}
	if got != sum {
		s.discard(team, up, mp, m.Size)
		return Info{SHA256: sum, Size: m.Size}, fmt.Errorf("%w: the bytes hash to %s", ErrHashMismatch, got)
	}
	op := s.objectPath(team, sum)
	if err := os.MkdirAll(filepath.Dir(op), 0o700); err != nil {
		return Info{}, fmt.Errorf("blob: complete: %w", err)
	}
	if err := os.Rename(up, op); err != nil {
		return Info{}, fmt.Errorf("blob: complete: %w", err)
	}
	if err := writeMeta(op+".json", m); err != nil {
		return Info{}, err
	}
	if err := os.Remove(mp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("blob: complete: %w", err)
	}
	if err := syncDir(filepath.Dir(up)); err != nil {
		return Info{}, err
	}
	return Info{SHA256: sum, Size: m.Size, Offset: m.Size, Complete: true, ContentType: m.ContentType}, nil
}

// discard removes an upload and releases its reservation.
func (s *Store) discard(team, up, mp string, size int64) {
	os.Remove(up)
	if os.Remove(mp) == nil {
		s.release(team, size)
	}
}

func (s *Store) reserve(team string, size int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.usage[team]+size > s.cfg.TeamQuota {
		return fmt.Errorf("%w: %d of %d bytes used", ErrQuota, s.usage[team], s.cfg.TeamQuota)
	}
	s.usage[team] += size
	return nil
}

func (s *Store) release(team string, size int64) {
	s.mu.Lock()
	s.usage[team] -= size
	s.mu.Unlock()
}

// Open returns the team's complete blob named sum for reading (its
// plaintext, from any offset), with its Info, or ErrNotFound (also for an
// unfinished upload).
func (s *Store) Open(ctx context.Context, team, sum string) (File, Info, error) {
	if err := checkArgs(team, sum); err != nil {
		return nil, Info{}, err
	}
	f, m, err := s.openObject(ctx, team, sum)
	if err != nil {
		return nil, Info{}, err
	}
	return f, Info{SHA256: sum, Size: m.Size, Offset: m.Size, Complete: true, ContentType: m.ContentType}, nil
}

// EraseRecords drops the erased records from the refs of the team's blobs
// and uploads, and deletes those no record refers to any more. It returns
// the hashes of the deleted blobs. It reads every metadata file of the
// team (a team's blob count, not its bytes).
func (s *Store) EraseRecords(ctx context.Context, team string, erased []Ref) ([]string, error) {
	if len(erased) == 0 {
		return nil, nil
	}
	gone := map[Ref]bool{}
	for _, r := range erased {
		gone[r] = true
	}
	root := filepath.Join(s.cfg.Dir, teamDirName(team))
	var metas []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".json") {
			metas = append(metas, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("blob: erase: %w", err)
	}
	var deleted []string
	for _, mp := range metas {
		if err := ctx.Err(); err != nil {
			return deleted, err
		}
		sum := strings.TrimSuffix(filepath.Base(mp), ".json")
		if !schema.IsSHA256(sum) {
			continue
		}
		d, err := s.eraseOne(ctx, team, sum, mp, gone)
		if err != nil {
			return deleted, err
		}
		if d {
			deleted = append(deleted, sum)
		}
	}
	return deleted, nil
}

func (s *Store) eraseOne(ctx context.Context, team, sum, mp string, gone map[Ref]bool) (bool, error) {
	unlock, err := s.lock(ctx, team+"\x00"+sum)
	if err != nil {
		return false, err
	}
	defer unlock()
	m, err := readMeta(mp)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	kept := slices.DeleteFunc(slices.Clone(m.Refs), func(r Ref) bool { return gone[r] })
	if len(kept) == len(m.Refs) {
		return false, nil
	}
	if len(kept) > 0 {
		m.Refs = kept
		return false, writeMeta(mp, m)
	}
	data := strings.TrimSuffix(mp, ".json")
	if strings.HasSuffix(filepath.Dir(mp), "uploads") {
		data += ".part"
	}
	if err := os.Remove(data); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("blob: erase: %w", err)
	}
	if err := os.Remove(mp); err != nil {
		return false, fmt.Errorf("blob: erase: %w", err)
	}
	s.release(team, m.Size)
	return true, syncDir(filepath.Dir(mp))
}

func addRef(path string, m meta, ref Ref) error {
	if slices.Contains(m.Refs, ref) || len(m.Refs) >= maxRefs {
		return nil
	}
	m.Refs = append(m.Refs, ref)
	return writeMeta(path, m)
}

func readMeta(path string) (meta, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return meta{}, err
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return meta{}, fmt.Errorf("blob: metadata %s: %w", path, err)
	}
	return m, nil
}

func writeMeta(path string, m meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("blob: metadata: %w", err)
	}
	return writeAtomic(path, b)
}

// writeAtomic writes a file by write, fsync, rename and fsync of the
// directory.
func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("blob: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("blob: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("blob: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("blob: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("blob: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("blob: sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("blob: sync dir: %w", err)
	}
	return nil
}

func (s *Store) hashFile(path string, m meta) (string, error) {
	f, err := s.openPlain(path, m)
	if err != nil {
		return "", fmt.Errorf("blob: hash: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("blob: hash: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (s *Store) sniffFile(path string, m meta) (string, error) {
	f, err := s.openPlain(path, m)
	if err != nil {
		return "", fmt.Errorf("blob: sniff: %w", err)
	}
	defer f.Close()
	head := make([]byte, SniffLen)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("blob: sniff: %w", err)
	}
	return Sniff(head[:n])
}

// partCodec returns how to write an upload's data file (size bytes on
// disk now) and the plaintext bytes it holds. An encrypted upload whose
// IV is not on disk yet (its first write, or a crash before the IV
// reached the disk) gets a new IV: no data follows it yet.
func (s *Store) partCodec(f *os.File, size int64, m meta) (fileCodec, int64, error) {
	if !m.Enc {
		return fileCodec{}, size, nil
	}
	if s.block == nil {
		return fileCodec{}, 0, ErrNoKey
	}
	if size < ivLen {
		iv, err := newIV()
		if err != nil {
			return fileCodec{}, 0, err
		}
		if err := f.Truncate(0); err != nil {
			return fileCodec{}, 0, fmt.Errorf("blob: write: %w", err)
		}
		if _, err := f.WriteAt(iv, 0); err != nil {
			return fileCodec{}, 0, fmt.Errorf("blob: write: %w", err)
		}
		return fileCodec{block: s.block, iv: iv}, 0, nil
	}
	c, err := s.codecFor(f, m)
	return c, size - ivLen, err
}

func clip(s string) string {
	if len(s) > 70 {
		return s[:70] + "…"
	}
	return s
}
