/**
 * The outbound-request guard (webhooks, URL input): which addresses are refused, the allow-list,
 * redirects checked on every hop, and one error for "refused", "closed port" and "not allowed".
 * The HTTP parts talk to a server of the test's own on loopback (nothing leaves the machine).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNetworkPolicy, embeddedIpv4, guardedRequest, UnreachableError, validateCidrs } from '../../src/net/net-guard.js';
import { deliverWebhook } from '../../src/jobs/queue/workers.js';
import { freePort } from '../helpers/redis.js';

describe('the default network policy', () => {
  const policy = createNetworkPolicy();
  it('refuses loopback, private, link-local, CGNAT, unspecified, multicast and metadata addresses, also as IPv4-mapped IPv6', () => {
    const refused = [
      '127.0.0.1',
      '127.3.4.5',
      '10.1.2.3',
      '172.16.0.1',
      '172.31.255.255',
      '192.168.1.1',
      '100.64.0.1',
      '169.254.169.254',
      '0.0.0.0',
      '224.0.0.1',
      '255.255.255.255',
      '::1',
      '::',
      'fe80::1',
      'fc00::1',
      'fd00:ec2::254',
      'ff02::1',
      '::ffff:127.0.0.1',
      '::ffff:7f00:1',
      '::ffff:169.254.169.254',
      '::ffff:10.0.0.1',
      '64:ff9b::7f00:1',
      '::127.0.0.1',
    ];
    for (const a of refused) expect(policy.allows(a), a).toBe(false);
  });

  it('allows public addresses, and only what the allow-list opens', () => {
    for (const a of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '100.128.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8']) expect(policy.allows(a), a).toBe(true);
    const open = createNetworkPolicy(['127.0.0.1/32', '10.0.0.0/8']);
    expect(open.allows('127.0.0.1')).toBe(true);
    expect(open.allows('::ffff:127.0.0.1')).toBe(true);
    expect(open.allows('127.0.0.2')).toBe(false);
    expect(open.allows('10.200.1.1')).toBe(true);
    expect(open.allows('192.168.0.1')).toBe(false);
    expect(open.allows('not an address')).toBe(false);
  });

  it('reads the IPv4 address inside IPv6 forms, and validates CIDR lists', () => {
    expect(embeddedIpv4('::ffff:7f00:1')).toBe('127.0.0.1');
    expect(embeddedIpv4('::ffff:169.254.169.254')).toBe('169.254.169.254');
    expect(embeddedIpv4('2001:db8::1')).toBeUndefined();
    expect(validateCidrs(['127.0.0.1/32', '::1/128', '10.0.0.0/8', '192.168.1.7'])).toEqual([]);
    expect(validateCidrs(['127.0.0.1/33', 'example.com/8', '10.0.0.0/x'])).toHaveLength(3);
  });
});

describe('requests under the policy', () => {
  let server: Server;
  let port: number;
  const seen: string[] = [];
  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push(`${req.method} ${req.headers.host} ${req.url}`);
      if (req.url === '/to-other-loopback') res.writeHead(302, { location: `http://127.0.0.2:${port}/secret` }).end();
      else if (req.url === '/to-self') res.writeHead(307, { location: '/hook' }).end();
      else res.writeHead(204).end();
    });
    // all loopback addresses (127.0.0.2 included), so that a refused hop is refused by the guard, not by the network
    await new Promise<void>((r) => server.listen(0, '0.0.0.0', () => r()));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
  });

  it('refuses loopback by default (IP literal and name), before any connection', async () => {
    seen.length = 0;
    for (const url of [`http://127.0.0.1:${port}/hook`, `http://localhost:${port}/hook`, `http://[::ffff:127.0.0.1]:${port}/hook`]) {
      await expect(guardedRequest(url, { signal: AbortSignal.timeout(5000) }, createNetworkPolicy()), url).rejects.toBeInstanceOf(UnreachableError);
    }
    expect(seen).toEqual([]);
  });

  it('connects where the allow-list opens, and checks every redirect hop', async () => {
    const policy = createNetworkPolicy(['127.0.0.1/32']);
    seen.length = 0;
    const ok = await guardedRequest(`http://127.0.0.1:${port}/to-self`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(5000) }, policy);
    ok.body.destroy();
    expect(ok.status).toBe(204);
    expect(seen).toEqual([`POST 127.0.0.1:${port} /to-self`, `POST 127.0.0.1:${port} /hook`]);
    seen.length = 0;
    await expect(guardedRequest(`http://127.0.0.1:${port}/to-other-loopback`, { signal: AbortSignal.timeout(5000) }, policy)).rejects.toBeInstanceOf(UnreachableError);
    // the first hop was made, the redirect to 127.0.0.2 was not
    expect(seen).toEqual([`GET 127.0.0.1:${port} /to-other-loopback`]);
  });

  it('webhooks: a refused address, a closed port and a user:password URL all fail without telling which port is open', async () => {
    const body = { url: '', event: 'job.completed' as const, body: { event: 'job.completed' } };
    const closed = await freePort();
    const forbidden = await deliverWebhook({ ...body, url: `http://127.0.0.1:${port}/hook?token=s3cret` }, 5000).catch((e: Error & { code?: string }) => e);
    const refused = await deliverWebhook({ ...body, url: `http://127.0.0.1:${closed}/hook?token=s3cret` }, 5000, createNetworkPolicy(['127.0.0.1/32'])).catch((e: Error & { code?: string }) => e);
    expect(forbidden).toMatchObject({ code: 'FW_ERR_WEBHOOK_FAILED' });
    expect(refused).toMatchObject({ code: 'FW_ERR_WEBHOOK_FAILED' });
    const text = (e: unknown, p: number): string => (e as Error).message.replace(String(p), 'PORT');
    expect(text(forbidden, port)).toBe(text(refused, closed));
    expect((forbidden as Error).message).not.toContain('s3cret');
    const delivered = await deliverWebhook({ ...body, url: `http://127.0.0.1:${port}/hook` }, 5000, createNetworkPolicy(['127.0.0.1/32']));
    expect(delivered).toEqual({ status: 204 });
    await expect(deliverWebhook({ ...body, url: `http://user:pw@127.0.0.1:${port}/hook` }, 5000, createNetworkPolicy(['127.0.0.1/32']))).rejects.toMatchObject({ code: 'FW_ERR_WEBHOOK_FAILED' });
  });
});
