#!/usr/bin/env python3
"""Print an NKey user pair for the tests: the public key (U...) and its
seed (SU...), made from an ed25519 key that openssl generated.

    nkey_gen.py PRIVATE_KEY.der PUBLIC_KEY.der

NKey encoding (github.com/nats-io/nkeys): a prefix byte, the 32 key bytes
and a CRC-16/XMODEM of both (little endian), in base32 without padding; a
seed carries two prefix bytes (seed, then user)."""
import base64
import sys

PREFIX_SEED = 18 << 3
PREFIX_USER = 20 << 3


def crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def encode(raw):
    raw += crc16(raw).to_bytes(2, "little")
    return base64.b32encode(raw).decode().rstrip("=")


def main():
    with open(sys.argv[1], "rb") as f:
        private = f.read()[-32:]  # PKCS#8 DER ends with the raw seed
    with open(sys.argv[2], "rb") as f:
        public = f.read()[-32:]  # SubjectPublicKeyInfo ends with the key
    print(encode(bytes([PREFIX_USER]) + public))
    seed = bytes([PREFIX_SEED | (PREFIX_USER >> 5), (PREFIX_USER & 31) << 3])
    print(encode(seed + private))


if __name__ == "__main__":
    main()
