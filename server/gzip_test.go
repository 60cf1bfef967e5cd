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

func TestResponseCoding(t *testing.T) {
	for _, tc := range []struct{ header, want string }{
		{"", ""},
		{"gzip", "gzip"}, // an SDK or client that predates zstd keeps gzip
		{"*", "gzip"},    // the wildcard stands for gzip only
		{"zstd", "zstd"},
		{"ZSTD", "zstd"},
		{"zstd, gzip", "zstd"},
		{"gzip, deflate, br, zstd", "zstd"}, // a browser's: equal qualities prefer zstd
		{"gzip, zstd;q=0.5", "gzip"},
		{"gzip;q=0.5, zstd;q=0.5", "zstd"},
		{"zstd;q=0, gzip", "gzip"},
		{"zstd;q=0", ""},
		{"zstd;q=bogus, gzip", "gzip"},
		{"zstd;q=0.1, *;q=0.2", "gzip"},
		{"zstd;q=0.3, gzip;q=0", "zstd"},
		{"xzstd", ""},
		{"identity", ""},
	} {
		if got := responseCoding(tc.header); got != tc.want {
			t.Errorf("responseCoding(%q) = %q, want %q", tc.header, got, tc.want)
		}
	}
}
