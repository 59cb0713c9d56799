package fec

// Arithmetic in GF(2^8) for the decoder's small matrix inversions and for
// the Cauchy coefficients. The field is the one klauspost/reedsolomon uses:
// polynomial x^8+x^4+x^3+x^2+1 (0x11d) with generator 2, so coefficients
// computed here multiply correctly with the library's SIMD slice routines.

const gfPoly = 0x11d

// gfExp holds 2^i for i in [0, 510) so that gfExp[log a + log b] needs no
// reduction modulo 255; gfLog is its inverse on non-zero bytes.
var gfExp, gfLog = buildGFTables()

func buildGFTables() (exp [510]byte, log [256]byte) {
	x := 1
	for i := 0; i < 255; i++ {
		exp[i] = byte(x)
		exp[i+255] = byte(x)
		log[x] = byte(i)
		x <<= 1
		if x&0x100 != 0 {
			x ^= gfPoly
		}
	}
	return exp, log
}

// gfMul returns a·b in GF(2^8).
func gfMul(a, b byte) byte {
	if a == 0 || b == 0 {
		return 0
	}
	return gfExp[int(gfLog[a])+int(gfLog[b])]
}

// gfInv returns the multiplicative inverse of a, which must not be 0.
func gfInv(a byte) byte {
	return gfExp[255-int(gfLog[a])]
}

// coef is the coding coefficient of data shard j in parity shard i: the
// Cauchy matrix entry 1/(x_i + y_j) with x_i = 255-i and y_j = j. The points
// are distinct whenever K+M <= 256, so every square submatrix is invertible
// (the code is MDS), and the entry does not depend on K, so a partial block
// of k shards encodes exactly like a full block whose missing shards are
// zero.
func coef(i, j int) byte {
	return gfInv(byte(255-i) ^ byte(j))
}

// gfInvert inverts the n×n row-major matrix a into inv by Gauss-Jordan
// elimination. a is destroyed. It reports false if a is singular, which a
// Cauchy submatrix never is.
func gfInvert(a, inv []byte, n int) bool {
	for i := range inv[:n*n] {
		inv[i] = 0
	}
	for i := 0; i < n; i++ {
		inv[i*n+i] = 1
	}
	for col := 0; col < n; col++ {
		piv := -1
		for r := col; r < n; r++ {
			if a[r*n+col] != 0 {
				piv = r
				break
			}
		}
		if piv < 0 {
			return false
		}
		if piv != col {
			for c := 0; c < n; c++ {
				a[piv*n+c], a[col*n+c] = a[col*n+c], a[piv*n+c]
				inv[piv*n+c], inv[col*n+c] = inv[col*n+c], inv[piv*n+c]
			}
		}
		if p := a[col*n+col]; p != 1 {
			s := gfInv(p)
			for c := 0; c < n; c++ {
				a[col*n+c] = gfMul(a[col*n+c], s)
				inv[col*n+c] = gfMul(inv[col*n+c], s)
			}
		}
		for r := 0; r < n; r++ {
			f := a[r*n+col]
			if r == col || f == 0 {
				continue
			}
			for c := 0; c < n; c++ {
				a[r*n+c] ^= gfMul(f, a[col*n+c])
				inv[r*n+c] ^= gfMul(f, inv[col*n+c])
			}
		}
	}
	return true
}
