package badgeropen

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/ristretto/v2/z"
)

// memExt is the file extension of Badger's memtable write-ahead logs.
const memExt = ".mem"

// memHeaderSize is the size of a memtable file's header: an 8-byte key ID
// and a 12-byte IV (Badger's vlogHeaderSize).
const memHeaderSize = 20

// Open opens the database opts describes with badger.Open. If that fails
// because a memtable file is empty (see the package doc), it removes the
// zero-length *.mem files in opts.Dir, logs each one to logger (nil means
// no log), and opens once more. Any other failure is returned as Badger
// reported it.
func Open(opts badger.Options, logger *slog.Logger) (*badger.DB, error) {
	db, err := badger.Open(opts)
	if err == nil || !emptyMemTable(err) || opts.InMemory || opts.ReadOnly {
		return db, err
	}
	removed, rerr := removeEmptyMemFiles(opts.Dir)
	if rerr != nil {
		return nil, fmt.Errorf("%w (recovering: %v)", err, rerr)
	}
	if len(removed) == 0 {
		return nil, err
	}
	if logger != nil {
		logger.Warn("removed empty memtable files left by a crash", "dir", opts.Dir, "files", removed)
	}
	return badger.Open(opts)
}

// emptyMemTable reports whether err is Badger failing on a memtable file
// with no header: z.NewFile surfacing from openMemTables.
func emptyMemTable(err error) bool {
	return errors.Is(err, z.NewFile) ||
		strings.Contains(err.Error(), "opening memtables") && strings.Contains(err.Error(), z.NewFile.Error())
}

// removeEmptyMemFiles deletes the *.mem files in dir that hold no entry,
// and returns their names. A file holds no entry when it is zero-length, or
// when everything after its 20-byte header (key ID and IV) is zero bytes:
// the failed open has already sized the empty file and written a header
// into it before giving up, and Badger zeroes the space after the last
// entry, so such a file has nothing to replay.
func removeEmptyMemFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), memExt) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return removed, err
		}
		path := filepath.Join(dir, e.Name())
		if info.Size() != 0 {
			zero, err := zeroAfter(path, memHeaderSize)
			if err != nil {
				return removed, err
			}
			if !zero {
				continue
			}
		}
		if err := os.Remove(path); err != nil {
			return removed, err
		}
		removed = append(removed, e.Name())
	}
	return removed, nil
}

// zeroAfter reports whether the file at path holds only zero bytes after
// its first skip bytes.
func zeroAfter(path string, skip int64) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if _, err := f.Seek(skip, io.SeekStart); err != nil {
		return false, err
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		for _, b := range buf[:n] {
			if b != 0 {
				return false, nil
			}
		}
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}
