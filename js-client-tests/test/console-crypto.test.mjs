// The console page's own SHA-256, HMAC-SHA256 and MD5 (it cannot count on WebCrypto on plain
// http, and no browser has MD5): the published reference vectors, then agreement with Node's
// OpenSSL on inputs of every length around the block boundaries, and the signed query format.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';

import { hmacSha256, md5, md5Hex, sha256, sha256Hex, signedQuery } from '../../src/console/page/crypto.mjs';

const hex = (bytes) => Buffer.from(bytes).toString('hex');
const bytes = (text) => new TextEncoder().encode(text);

describe('console crypto', () => {
  it('SHA-256: the FIPS 180-2 examples', () => {
    assert.equal(sha256Hex(''), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.equal(sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    assert.equal(
      sha256Hex('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'),
      '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
    );
    assert.equal(sha256Hex('a'.repeat(1_000_000)), 'cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0');
  });

  it('HMAC-SHA256: RFC 4231 test cases 1, 2, 3, 4, 6 and 7', () => {
    const cases = [
      [Buffer.alloc(20, 0x0b), bytes('Hi There'), 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7'],
      [bytes('Jefe'), bytes('what do ya want for nothing?'), '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'],
      [Buffer.alloc(20, 0xaa), Buffer.alloc(50, 0xdd), '773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe'],
      [
        Buffer.from('0102030405060708090a0b0c0d0e0f10111213141516171819', 'hex'),
        Buffer.alloc(50, 0xcd),
        '82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b',
      ],
      [
        Buffer.alloc(131, 0xaa),
        bytes('Test Using Larger Than Block-Size Key - Hash Key First'),
        '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
      ],
      [
        Buffer.alloc(131, 0xaa),
        bytes('This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.'),
        '9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2',
      ],
    ];
    for (const [key, data, expected] of cases) {
      assert.equal(hex(hmacSha256(new Uint8Array(key), new Uint8Array(data))), expected);
    }
  });

  it('MD5: the RFC 1321 test suite', () => {
    assert.equal(md5Hex(''), 'd41d8cd98f00b204e9800998ecf8427e');
    assert.equal(md5Hex('a'), '0cc175b9c0f1b6a831c399e269772661');
    assert.equal(md5Hex('abc'), '900150983cd24fb0d6963f7d28e17f72');
    assert.equal(md5Hex('message digest'), 'f96b697d7cb7938d525a2f31aaf161d0');
    assert.equal(md5Hex('abcdefghijklmnopqrstuvwxyz'), 'c3fcd3d76192e4007dfb496cca67e13b');
    assert.equal(
      md5Hex('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'),
      'd174ab98d277d9f5a5611c2c9f419d9f',
    );
    assert.equal(
      md5Hex('12345678901234567890123456789012345678901234567890123456789012345678901234567890'),
      '57edf4a22be3c955ac49da2e2107b67a',
    );
  });

  it('agrees with OpenSSL on every length from 0 to 300 bytes, and on UTF-8 text', () => {
    for (let n = 0; n <= 300; n++) {
      const data = new Uint8Array(randomBytes(n));
      const key = new Uint8Array(randomBytes(n % 97));
      assert.equal(hex(sha256(data)), createHash('sha256').update(data).digest('hex'), `sha256 of ${n} bytes`);
      assert.equal(hex(md5(data)), createHash('md5').update(data).digest('hex'), `md5 of ${n} bytes`);
      assert.equal(hex(hmacSha256(key, data)), createHmac('sha256', key).update(data).digest('hex'), `hmac of ${n} bytes`);
    }
    const text = '{"name":"ünïcødé ✓","data":"日本語"}';
    assert.equal(md5Hex(text), createHash('md5').update(text, 'utf8').digest('hex'));
  });

  it('signs a REST request as protocol §12.1 says', () => {
    const body = '{"name":"e","channels":["c"],"data":"x"}';
    const query = signedQuery({
      method: 'POST', path: '/apps/1/events', key: 'k', secret: 's', params: { info: 'user_count' }, body, now: 1_700_000_000_500,
    });
    const params = new URLSearchParams(query);
    const md5 = createHash('md5').update(body).digest('hex');
    const toSign = `POST\n/apps/1/events\nauth_key=k&auth_timestamp=1700000000&auth_version=1.0&body_md5=${md5}&info=user_count`;
    assert.equal(params.get('body_md5'), md5);
    assert.equal(params.get('auth_signature'), createHmac('sha256', 's').update(toSign).digest('hex'));
    assert.equal([...params.keys()].at(-1), 'auth_signature');
  });
});
