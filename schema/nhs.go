package schema

import (
	"errors"
	"fmt"
)

// NHS number check failures, wrapped by CheckNHSNumber's errors.
var (
	errNHSFormat     = errors.New("NHS number must be 10 digits")
	errNHSCheckTen   = errors.New("NHS number check digit would be 10, so no such number is issued")
	errNHSCheckDigit = errors.New("NHS number check digit does not match")
)

// NHSCheckDigit returns the modulus 11 check digit for the first nine digits
// of an NHS number: weights 10 down to 2, check = 11 - sum%11, where 11
// becomes 0. It returns false when the check would be 10: no number with
// those nine digits is valid.
func NHSCheckDigit(first9 string) (int, bool) {
	if len(first9) != 9 {
		return 0, false
	}
	sum := 0
	for i := range 9 {
		c := first9[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		sum += int(c-'0') * (10 - i)
	}
	check := 11 - sum%11
	switch check {
	case 11:
		return 0, true
	case 10:
		return 0, false
	}
	return check, true
}

// CheckNHSNumber checks a stored NHS number: exactly 10 ASCII digits (no
// spaces; display as 3-3-4 is a presentation matter) whose last digit is the
// modulus 11 check digit of the first nine.
func CheckNHSNumber(s string) error {
	if len(s) != 10 {
		return fmt.Errorf("%w, got %d characters", errNHSFormat, len(s))
	}
	for i := range 10 {
		if s[i] < '0' || s[i] > '9' {
			return fmt.Errorf("%w, got a non-digit at position %d", errNHSFormat, i+1)
		}
	}
	check, ok := NHSCheckDigit(s[:9])
	if !ok {
		return errNHSCheckTen
	}
	if int(s[9]-'0') != check {
		return fmt.Errorf("%w: last digit %c, want %d", errNHSCheckDigit, s[9], check)
	}
	return nil
}

// ValidNHSNumber reports whether s is a valid NHS number (CheckNHSNumber).
func ValidNHSNumber(s string) bool { return CheckNHSNumber(s) == nil }

// IsTestNHSNumber reports whether s is a valid NHS number in the 999 range,
// which is reserved for test data and never issued. Demo data uses only
// these.
func IsTestNHSNumber(s string) bool { return ValidNHSNumber(s) && s[:3] == "999" }
