import { testRng } from '@peer/test-utils';
import { describe, expect, it } from 'vitest';
import { crc32c, maskCrc, maskedCrc32c, unmaskCrc } from './crc32c.js';

/** Bit-at-a-time CRC-32C (reflected polynomial 0x82F63B78): the textbook definition. */
function referenceCrc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** The mask in exact integer arithmetic: rotate right by 15, add 0xa282ead8, mod 2^32. */
function referenceMask(crc: number): number {
  const c = BigInt(crc);
  const rotated = ((c >> 15n) | (c << 17n)) & 0xffffffffn;
  return Number((rotated + 0xa282ead8n) % 2n ** 32n);
}

describe('crc32c', () => {
  it('matches the published check values (RFC 3720 B.4 and the CRC catalogue)', () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i))).toBe(0x113fdb5c);
  });

  it('matches the bitwise definition on random inputs', () => {
    const r = testRng();
    for (let t = 0; t < 200; t++) {
      const bytes = Uint8Array.from({ length: r.int(300) }, () => r.int(256));
      expect(crc32c(bytes)).toBe(referenceCrc32c(bytes));
    }
  });

  it('masks as TensorFlow does, and unmasking inverts it', () => {
    const r = testRng();
    const crcs = [0, 1, 0xffffffff, 0x80000000, 0x7fff, 0xe3069283, ...Array.from({ length: 500 }, () => r.int(2 ** 32))];
    for (const crc of crcs) {
      const masked = maskCrc(crc);
      expect(masked).toBe(referenceMask(crc));
      expect(unmaskCrc(masked)).toBe(crc);
      expect(unmaskCrc(unmaskCrc(maskCrc(masked)))).toBe(crc);
    }
    // TensorFlow's crc32c_test: the mask changes the value, also applied twice
    const foo = crc32c(new TextEncoder().encode('foo'));
    expect(maskCrc(foo)).not.toBe(foo);
    expect(maskCrc(maskCrc(foo))).not.toBe(foo);
    expect(maskedCrc32c(new TextEncoder().encode('123456789'))).toBe(referenceMask(0xe3069283));
  });
});
