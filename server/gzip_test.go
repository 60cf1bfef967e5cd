package server

import "testing"

func TestAcceptsGzip(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   bool
	}{
		{"", false},
		{"gzip", true},
		{"GZIP", true},
		{"deflate, gzip", true},
		{"gzip;q=1", true},
		{"gzip;q=1.0", true},
		{"gzip;q=0.5", true},
		{"gzip; q=0.5", true},
		{"gzip ; Q=0.001", true},
		{"br;q=1.0, gzip;q=0.8, *;q=0.1", true},
		{"gzip;q=0", false},
		{"gzip;q=0.0", false},
		{"gzip;q=0.000", false},
		{"gzip; q=0", false},
		{"gzip;q=bogus", false},
		{"gzip;q=2", false},
		{"gzip;q=-1", false},
		{"identity", false},
		{"deflate", false},
		{"*", true},
		{"*;q=0", false},
		{"gzip;q=0, *", false}, // an explicit refusal wins over the wildcard
		{"*, gzip;q=0", false},
		{"xgzip", false},
		{"gzip;level=9;q=0.3", true},
	} {
		if got := acceptsGzip(tc.header); got != tc.want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", tc.header, got, tc.want)
		}
	}
}
