package backup

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Erasure is one line of the erasure journal: a record erased on the
// server. The journal lives outside the Badger stores (by default
// DATA/erasures.jsonl) and is carried in every backup (section
// "erasures"), so that restoring a backup taken before an erasure can
// re-apply it (see docs/OPERATIONS.md). It holds IDs only, never values.
type Erasure struct {
	At         time.Time `json:"at"`
	Team       string    `json:"team"`
	Collection string    `json:"collection"`
	ID         string    `json:"id"`
}

// Key is the erasure's identity: one line per erased record.
func (e Erasure) Key() string { return e.Team + "\x00" + e.Collection + "\x00" + e.ID }

// AppendErasures appends es to the journal at path (created 0600 if
// missing) and fsyncs it before returning.
func AppendErasures(path string, es []Erasure) error {
	if len(es) == 0 {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("erasure journal: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("erasure journal: %w", err)
	}
	var buf bytes.Buffer
	for _, e := range es {
		b, err := json.Marshal(e)
		if err != nil {
			f.Close()
			return err
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("erasure journal: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("erasure journal: %w", err)
	}
	return f.Close()
}

// ReadErasures reads a journal; a missing file is an empty journal. A
// torn last line (a crash mid-append, before the erasure was reported
// done) is skipped.
func ReadErasures(path string) ([]Erasure, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("erasure journal: %w", err)
	}
	defer f.Close()
	return parseErasures(f)
}

func parseErasures(r io.Reader) ([]Erasure, error) {
	var out []Erasure
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var e Erasure
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Team == "" || e.Collection == "" || e.ID == "" {
			continue // torn or foreign line
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// ErasureItems turns a journal into the items of an "erasures" section.
func ErasureItems(es []Erasure) ([]Item, error) {
	seen := map[string]bool{}
	var out []Item
	for _, e := range es {
		if seen[e.Key()] {
			continue
		}
		seen[e.Key()] = true
		b, err := json.Marshal(e)
		if err != nil {
			return nil, err
		}
		out = append(out, Item{Key: []byte(e.Key()), Value: b})
	}
	sortItems(out)
	return out, nil
}

// ErasuresOf returns the erasures a backup file carries in its
// "erasures" section (checking the whole file), for restoring an older
// backup with the erasures of a newer one.
func ErasuresOf(r io.Reader) ([]Erasure, error) {
	var out []Erasure
	_, err := Read(r, func(section string, it *Item) error {
		if section != "erasures" {
			return nil
		}
		var e Erasure
		if err := json.Unmarshal(it.Value, &e); err != nil {
			return fmt.Errorf("%w: erasure item: %v", ErrCorrupt, err)
		}
		out = append(out, e)
		return nil
	})
	return out, err
}
