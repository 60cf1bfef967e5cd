package auth

import (
	_ "embed"
	"fmt"
	"strings"
	gosync "sync"
	"unicode/utf8"
)

// MinPasswordLen and MaxPasswordLen bound passwords, in bytes (bcrypt
// reads at most 72).
const (
	MinPasswordLen = 10
	MaxPasswordLen = 72
)

// commonPasswords is Openwall's password.lst (3,546 of the passwords most
// often seen, compiled by Solar Designer, in the public domain), as shipped
// by Debian's john-data package.
//
//go:embed common-passwords.txt
var commonPasswords string

var (
	commonOnce gosync.Once
	commonSet  map[string]struct{}
)

func isCommonPassword(pw string) bool {
	commonOnce.Do(func() {
		commonSet = map[string]struct{}{}
		for _, line := range strings.Split(commonPasswords, "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#!comment:") {
				continue
			}
			commonSet[strings.ToLower(line)] = struct{}{}
		}
	})
	_, ok := commonSet[strings.ToLower(pw)]
	return ok
}

// CheckPassword applies the password rule: MinPasswordLen to
// MaxPasswordLen bytes, valid UTF-8, not one of the embedded common
// passwords (compared case-insensitively), and not the username. It
// returns an error wrapping ErrWeakPassword saying which.
func CheckPassword(username, pw string) error {
	switch {
	case len(pw) < MinPasswordLen:
		return fmt.Errorf("%w: must be at least %d bytes", ErrWeakPassword, MinPasswordLen)
	case len(pw) > MaxPasswordLen:
		return fmt.Errorf("%w: must be at most %d bytes", ErrWeakPassword, MaxPasswordLen)
	case !utf8.ValidString(pw):
		return fmt.Errorf("%w: must be valid UTF-8", ErrWeakPassword)
	case isCommonPassword(pw):
		return fmt.Errorf("%w: it is one of the most common passwords", ErrWeakPassword)
	case username != "" && strings.EqualFold(strings.TrimSpace(pw), strings.TrimSpace(username)):
		return fmt.Errorf("%w: must not be the username", ErrWeakPassword)
	}
	return nil
}
