// Package rawgrep searches the raw bytes of files for strings, as an
// operator's grep would, for tests that prove what is (not) on disk. It
// skips the holes of sparse files (Badger preallocates its value log as a
// sparse file of gigabytes), which hold only zero bytes.
package rawgrep

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Files returns the paths under dir whose bytes contain s. A file removed
// while the search runs (a store rotating its logs) holds nothing: it is
// skipped, not an error.
func Files(dir, s string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil && p != dir && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		ok, err := Contains(p, []byte(s))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if ok {
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// Contains reports whether the file at path contains s, reading only its
// data extents.
func Contains(path string, s []byte) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fd := int(f.Fd())
	buf := make([]byte, 1<<20)
	var off int64
	for {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return false, nil // no data after off
		} else if err != nil {
			data = off // no SEEK_DATA support: read everything
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			st, serr := f.Stat()
			if serr != nil {
				return false, serr
			}
			hole = st.Size()
		}
		// Read [data, hole) in chunks that overlap by len(s)-1 bytes.
		for pos := data; pos < hole; {
			n := int(min(int64(len(buf)), hole-pos))
			m, err := f.ReadAt(buf[:n], pos)
			if bytes.Contains(buf[:m], s) {
				return true, nil
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return false, err
			}
			if m == 0 {
				break
			}
			next := pos + int64(m)
			if next < hole && m > len(s) {
				next -= int64(len(s) - 1)
			}
			pos = next
		}
		off = hole
	}
}
