/* SPDX-License-Identifier: MIT */
/*
 * AEGIS-128L (draft-irtf-cfrg-aegis-aead), the AEAD of the page stream:
 * a 128-bit key and nonce, a 128-bit tag, eight AES rounds per 32 bytes.
 * Written from the draft's pseudocode; its test vectors are checked by
 * `ppm-pagestream selftest`. Needs AES-NI (the caller checks the CPU).
 */
#ifndef PPM_AEGIS128L_H
#define PPM_AEGIS128L_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define AEGIS_TARGET __attribute__((target("aes,sse4.1")))
#define AEGIS_KEY 16
#define AEGIS_NONCE 16
#define AEGIS_TAG 16

struct aegis {
	__m128i s[8];
};

static const uint8_t aegis_c0[16] = {
	0x00, 0x01, 0x01, 0x02, 0x03, 0x05, 0x08, 0x0d,
	0x15, 0x22, 0x37, 0x59, 0x90, 0xe9, 0x79, 0x62,
};

static const uint8_t aegis_c1[16] = {
	0xdb, 0x3d, 0x18, 0x55, 0x6d, 0xc2, 0x2f, 0xf1,
	0x20, 0x11, 0x31, 0x42, 0x73, 0xb5, 0x28, 0xdd,
};

#define LD(p) _mm_loadu_si128((const __m128i *)(p))
#define ST(p, v) _mm_storeu_si128((__m128i *)(p), (v))
#define XOR(a, b) _mm_xor_si128((a), (b))
#define AND(a, b) _mm_and_si128((a), (b))

AEGIS_TARGET static inline void aegis_update(struct aegis *a, __m128i m0, __m128i m1)
{
	__m128i *s = a->s;
	__m128i t = s[7];

	s[7] = _mm_aesenc_si128(s[6], s[7]);
	s[6] = _mm_aesenc_si128(s[5], s[6]);
	s[5] = _mm_aesenc_si128(s[4], s[5]);
	s[4] = _mm_aesenc_si128(s[3], XOR(s[4], m1));
	s[3] = _mm_aesenc_si128(s[2], s[3]);
	s[2] = _mm_aesenc_si128(s[1], s[2]);
	s[1] = _mm_aesenc_si128(s[0], s[1]);
	s[0] = _mm_aesenc_si128(t, XOR(s[0], m0));
}

AEGIS_TARGET static void aegis_init(struct aegis *a, const uint8_t key[16], const uint8_t nonce[16])
{
	__m128i k = LD(key), n = LD(nonce), c0 = LD(aegis_c0), c1 = LD(aegis_c1);
	int i;

	a->s[0] = XOR(k, n);
	a->s[1] = c1;
	a->s[2] = c0;
	a->s[3] = c1;
	a->s[4] = XOR(k, n);
	a->s[5] = XOR(k, c0);
	a->s[6] = XOR(k, c1);
	a->s[7] = XOR(k, c0);
	for (i = 0; i < 10; i++)
		aegis_update(a, n, k);
}

/* Absorbs the associated data, zero-padded to 32 bytes. */
AEGIS_TARGET static void aegis_ad(struct aegis *a, const uint8_t *ad, size_t n)
{
	uint8_t pad[32];

	for (; n >= 32; ad += 32, n -= 32)
		aegis_update(a, LD(ad), LD(ad + 16));
	if (n) {
		memset(pad, 0, sizeof(pad));
		memcpy(pad, ad, n);
		aegis_update(a, LD(pad), LD(pad + 16));
	}
}

/* The keystream blocks z0, z1 of the current state. */
#define Z0(s) XOR(XOR((s)[1], (s)[6]), AND((s)[2], (s)[3]))
#define Z1(s) XOR(XOR((s)[2], (s)[5]), AND((s)[6], (s)[7]))

/* Encrypts n bytes of in into out (they may be the same buffer). */
AEGIS_TARGET static void aegis_enc(struct aegis *a, uint8_t *out, const uint8_t *in, size_t n)
{
	uint8_t pad[32];
	__m128i t0, t1;

	for (; n >= 32; in += 32, out += 32, n -= 32) {
		t0 = LD(in);
		t1 = LD(in + 16);
		ST(out, XOR(t0, Z0(a->s)));
		ST(out + 16, XOR(t1, Z1(a->s)));
		aegis_update(a, t0, t1);
	}
	if (n) {
		memset(pad, 0, sizeof(pad));
		memcpy(pad, in, n);
		t0 = LD(pad);
		t1 = LD(pad + 16);
		ST(pad, XOR(t0, Z0(a->s)));
		ST(pad + 16, XOR(t1, Z1(a->s)));
		memcpy(out, pad, n);
		aegis_update(a, t0, t1);
	}
}

/* Decrypts n bytes of in into out (they may be the same buffer). */
AEGIS_TARGET static void aegis_dec(struct aegis *a, uint8_t *out, const uint8_t *in, size_t n)
{
	uint8_t pad[32];
	__m128i o0, o1;

	for (; n >= 32; in += 32, out += 32, n -= 32) {
		o0 = XOR(LD(in), Z0(a->s));
		o1 = XOR(LD(in + 16), Z1(a->s));
		ST(out, o0);
		ST(out + 16, o1);
		aegis_update(a, o0, o1);
	}
	if (n) {
		memset(pad, 0, sizeof(pad));
		memcpy(pad, in, n);
		ST(pad, XOR(LD(pad), Z0(a->s)));
		ST(pad + 16, XOR(LD(pad + 16), Z1(a->s)));
		memcpy(out, pad, n);
		memset(pad + n, 0, sizeof(pad) - n);
		aegis_update(a, LD(pad), LD(pad + 16));
	}
}

AEGIS_TARGET static void aegis_final(struct aegis *a, size_t ad_len, size_t msg_len,
				     uint8_t tag[16])
{
	uint64_t lens[2] = { (uint64_t)ad_len * 8, (uint64_t)msg_len * 8 };
	__m128i t = XOR(a->s[2], LD(lens)), x;
	int i;

	for (i = 0; i < 7; i++)
		aegis_update(a, t, t);
	x = XOR(XOR(XOR(a->s[0], a->s[1]), XOR(a->s[2], a->s[3])),
		XOR(XOR(a->s[4], a->s[5]), a->s[6]));
	ST(tag, x);
}

/* Seals msg (n bytes) in place; writes the tag. */
AEGIS_TARGET static void aegis_seal(const uint8_t key[16], const uint8_t nonce[16],
				    const uint8_t *ad, size_t ad_len,
				    uint8_t *out, const uint8_t *msg, size_t n, uint8_t tag[16])
{
	struct aegis a;

	aegis_init(&a, key, nonce);
	aegis_ad(&a, ad, ad_len);
	aegis_enc(&a, out, msg, n);
	aegis_final(&a, ad_len, n, tag);
}

/* Opens ct (n bytes) into out; 0 when the tag matches, else -1 and out is zeroed. */
AEGIS_TARGET static int aegis_open(const uint8_t key[16], const uint8_t nonce[16],
				   const uint8_t *ad, size_t ad_len,
				   uint8_t *out, const uint8_t *ct, size_t n, const uint8_t tag[16])
{
	struct aegis a;
	uint8_t want[16], diff = 0;
	int i;

	aegis_init(&a, key, nonce);
	aegis_ad(&a, ad, ad_len);
	aegis_dec(&a, out, ct, n);
	aegis_final(&a, ad_len, n, want);
	for (i = 0; i < 16; i++)
		diff |= want[i] ^ tag[i];
	if (diff) {
		memset(out, 0, n);
		return -1;
	}
	return 0;
}

#endif
