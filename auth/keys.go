package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// signingKey is one Ed25519 key pair with its key ID.
type signingKey struct {
	kid  string
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

// keyring holds every key that verifies tokens; the newest one signs.
type keyring struct {
	signing *signingKey
	byKID   map[string]ed25519.PublicKey
}

// kidOf derives a key ID from a public key: the first 16 hex digits of its
// SHA-256.
func kidOf(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// loadKeys reads every "<kid>.pem" key in dir (PKCS #8 PEM) and creates a
// first key if there is none. The key file most recently modified signs.
func loadKeys(dir string) (*keyring, error) {
	keys, err := readKeyDir(dir)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		k, err := generateKey(dir)
		if err != nil {
			return nil, err
		}
		keys = append(keys, datedKey{k, 0})
	}
	return newKeyring(keys), nil
}

// datedKey is a key with the time that orders it: the newest signs.
type datedKey struct {
	k   *signingKey
	mod int64 // Unix ns
}

// newKeyring holds keys, the newest signing (ties broken by kid); keys is
// not empty.
func newKeyring(keys []datedKey) *keyring {
	keys = slices.Clone(keys)
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].mod != keys[j].mod {
			return keys[i].mod < keys[j].mod
		}
		return keys[i].k.kid < keys[j].k.kid
	})
	kr := &keyring{byKID: map[string]ed25519.PublicKey{}}
	for _, d := range keys {
		kr.byKID[d.k.kid] = d.k.pub
	}
	kr.signing = keys[len(keys)-1].k
	return kr
}

// readKeyDir reads every "<kid>.pem" key in dir, creating dir if needed,
// each dated by its file's modification time.
func readKeyDir(dir string) ([]datedKey, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("key dir: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("key dir: %w", err)
	}
	var keys []datedKey
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".pem") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		k, err := readKey(path)
		if err != nil {
			return nil, err
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", path, err)
		}
		keys = append(keys, datedKey{k, info.ModTime().UnixNano()})
	}
	return keys, nil
}

func readKey(path string) (*signingKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	return parseKey(path, b)
}

// parseKey parses a PKCS #8 PEM Ed25519 private key; name is for errors.
func parseKey(path string, b []byte) (*signingKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("key %s: no PKCS #8 PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key %s: %T is not an Ed25519 key", path, k)
	}
	pub := priv.Public().(ed25519.PublicKey)
	return &signingKey{kid: kidOf(pub), priv: priv, pub: pub}, nil
}

// generateKey creates a new Ed25519 key in dir as "<kid>.pem" (see
// writeKey).
func generateKey(dir string) (*signingKey, error) {
	k, err := newSigningKey()
	if err != nil {
		return nil, err
	}
	if err := writeKey(dir, k); err != nil {
		return nil, err
	}
	return k, nil
}

// newSigningKey generates an Ed25519 key.
func newSigningKey() (*signingKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return &signingKey{kid: kidOf(pub), priv: priv, pub: pub}, nil
}

// pemOf encodes k's private key as PKCS #8 PEM.
func pemOf(k *signingKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.priv)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// writeKey writes k to dir as "<kid>.pem", mode 0600, to a temporary file
// renamed into place so a crash never leaves half a key.
func writeKey(dir string, k *signingKey) error {
	b, err := pemOf(k)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, k.kid+".pem")
	tmp, err := os.CreateTemp(dir, ".key-*")
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write key: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	return nil
}
