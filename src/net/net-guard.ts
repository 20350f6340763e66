/**
 * Outbound HTTP for webhooks and URL input, safe against server-side request forgery: every
 * address a host name resolves to is checked before connecting (loopback, private, link-local,
 * CGNAT, unspecified, multicast, reserved and cloud-metadata ranges are refused, IPv4-mapped IPv6
 * forms included), the connection goes to the address that was checked (the checked lookup is the
 * socket's own lookup: no second resolution, no DNS rebinding), and redirects are followed by hand
 * with the same check on every hop. FRAMEWISE_NETWORK_ALLOW (CIDRs) opens ranges on purpose.
 *
 * A refused address, a refused connection and a timeout give the same error, so that a caller
 * cannot map which internal ports are open.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';

/** Ranges no outbound request may reach unless FRAMEWISE_NETWORK_ALLOW opens them. */
export const DENIED_RANGES: readonly string[] = [
  '0.0.0.0/8', // "this network", unspecified
  '10.0.0.0/8', // private
  '100.64.0.0/10', // CGNAT
  '127.0.0.0/8', // loopback
  '169.254.0.0/16', // link-local, cloud metadata (169.254.169.254)
  '172.16.0.0/12', // private
  '192.0.0.0/24', // IETF protocol assignments
  '192.0.2.0/24', // documentation
  '192.168.0.0/16', // private
  '198.18.0.0/15', // benchmarking
  '198.51.100.0/24', // documentation
  '203.0.113.0/24', // documentation
  '224.0.0.0/4', // multicast
  '240.0.0.0/4', // reserved, broadcast
  '::/128', // unspecified
  '::1/128', // loopback
  '64:ff9b::/96', // NAT64 (checked again as IPv4 below)
  '100::/64', // discard
  '2001:db8::/32', // documentation
  'fc00::/7', // unique local (fd00:ec2::254, the EC2 metadata address, included)
  'fe80::/10', // link-local
  'fec0::/10', // site-local (deprecated)
  'ff00::/8', // multicast
];

export interface NetworkPolicy {
  /** Whether an outbound request may connect to this IP address. */
  allows(address: string): boolean;
}

function toBlockList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [addr, bits] = cidr.split('/') as [string, string | undefined];
    const family = isIP(addr);
    if (family === 0) throw new Error(`not an IP address: ${addr}`);
    const type = family === 4 ? 'ipv4' : 'ipv6';
    const prefix = bits === undefined ? (family === 4 ? 32 : 128) : Number(bits);
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128) || (bits !== undefined && !/^\d+$/.test(bits))) throw new Error(`bad prefix length in ${cidr}`);
    list.addSubnet(addr, prefix, type);
  }
  return list;
}

/** Check a list of CIDRs (`10.0.0.0/8`, `::1/128`, a bare address): the problems, empty when valid. */
export function validateCidrs(cidrs: readonly string[]): string[] {
  const problems: string[] = [];
  for (const c of cidrs) {
    try {
      toBlockList([c]);
    } catch (err) {
      problems.push(err instanceof Error ? err.message : String(err));
    }
  }
  return problems;
}

/** The IPv4 address an IPv6 address stands for (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`), if any. */
export function embeddedIpv4(address: string): string | undefined {
  if (isIP(address) !== 6) return undefined;
  const words = expandIpv6(address);
  if (!words) return undefined;
  const zero = (from: number, to: number): boolean => words.slice(from, to).every((w) => w === 0);
  const mapped = zero(0, 5) && words[5] === 0xffff;
  const compatible = zero(0, 6) && (words[6] !== 0 || (words[7] ?? 0) > 1);
  const nat64 = words[0] === 0x64 && words[1] === 0xff9b && zero(2, 6);
  if (!mapped && !compatible && !nat64) return undefined;
  const hi = words[6] ?? 0;
  const lo = words[7] ?? 0;
  return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
}

/** An IPv6 address as its eight 16-bit words (undefined when it is not one). */
function expandIpv6(address: string): number[] | undefined {
  let a = address.split('%')[0] as string;
  // a dotted IPv4 tail becomes two words
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(a);
  if (dotted) {
    const [b0, b1, b2, b3] = dotted.slice(1).map(Number) as [number, number, number, number];
    a = `${a.slice(0, dotted.index)}${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  }
  const halves = a.split('::');
  if (halves.length > 2) return undefined;
  const part = (s: string | undefined): number[] => (s ? s.split(':').map((w) => parseInt(w, 16)) : []);
  const head = part(halves[0]);
  const tail = part(halves[1]);
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  const words = [...head, ...new Array<number>(Math.max(0, fill)).fill(0), ...tail];
  return words.length === 8 && words.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffff) ? words : undefined;
}

/** The default policy (public addresses only) opened by `allow` (CIDRs, e.g. FRAMEWISE_NETWORK_ALLOW). */
export function createNetworkPolicy(allow: readonly string[] = []): NetworkPolicy {
  const denied = toBlockList(DENIED_RANGES);
  const allowed = toBlockList(allow);
  const check = (address: string): boolean => {
    const family = isIP(address);
    if (family === 0) return false;
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (allowed.check(address, type)) return true;
    const v4 = embeddedIpv4(address);
    if (v4 !== undefined) return check(v4);
    return !denied.check(address, type);
  };
  return { allows: check };
}

/** Thrown for any request that could not be made or answered: refused, unreachable, timed out or not allowed (one kind on purpose). */
export class UnreachableError extends Error {
  override readonly name = 'UnreachableError';
}

export interface GuardedRequest {
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  /** For the whole exchange, redirects and body included. */
  signal: AbortSignal;
  /** @defaultValue 5 */
  maxRedirects?: number;
}

export interface GuardedResponse {
  status: number;
  headers: IncomingMessage['headers'];
  /** The body stream (read or destroy it). */
  body: IncomingMessage;
  /** The URL that answered (after redirects). */
  url: URL;
}

/** A socket lookup that only returns addresses the policy allows (the socket connects to what it returns). */
function checkedLookup(policy: NetworkPolicy): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
      if (err) return callback(err, '', 0);
      const ok = addresses.filter((a) => policy.allows(a.address));
      if (ok.length === 0) return callback(Object.assign(new Error(`${hostname} resolves to no allowed address`), { code: 'FW_NET_FORBIDDEN' }), '', 0);
      if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, ok);
      const first = ok[0] as LookupAddress;
      callback(null, first.address, first.family);
    });
  };
}

function once(url: URL, req: GuardedRequest, policy: NetworkPolicy): Promise<IncomingMessage> {
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  // an IP literal is connected to without a lookup: check it here
  if (isIP(host) !== 0 && !policy.allows(host)) return Promise.reject(new UnreachableError('address not allowed'));
  const options: RequestOptions = {
    method: req.method ?? 'GET',
    headers: { ...req.headers, ...(req.body !== undefined ? { 'content-length': String(Buffer.byteLength(req.body)) } : {}) },
    signal: req.signal,
    lookup: checkedLookup(policy),
    // no connection reuse across hops or requests: each connection is checked
    agent: false,
  };
  return new Promise((resolve, reject) => {
    const r = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, options, resolve);
    r.on('error', (err) => reject(new UnreachableError(err.message, { cause: err })));
    r.end(req.body);
  });
}

/**
 * One HTTP(S) request under the policy, redirects (301, 302, 303, 307, 308) followed by hand up to
 * `maxRedirects`, each hop checked. Throws UnreachableError when no allowed server answered.
 */
export async function guardedRequest(url: string | URL, req: GuardedRequest, policy: NetworkPolicy): Promise<GuardedResponse> {
  let current = new URL(url);
  let method = req.method ?? 'GET';
  let body = req.body;
  for (let hop = 0; ; hop++) {
    if (current.protocol !== 'http:' && current.protocol !== 'https:') throw new UnreachableError(`redirected to a ${current.protocol} URL`);
    const res = await once(current, { ...req, method, ...(body !== undefined ? { body } : { body: undefined }) }, policy);
    const status = res.statusCode ?? 0;
    const location = res.headers.location;
    if (![301, 302, 303, 307, 308].includes(status) || !location) return { status, headers: res.headers, body: res, url: current };
    res.destroy();
    if (hop >= (req.maxRedirects ?? 5)) throw new UnreachableError('too many redirects');
    current = new URL(location, current);
    // as fetch does: 303 (and 301/302 after a POST) continue as a GET without a body
    if (status === 303 || ((status === 301 || status === 302) && method === 'POST')) {
      method = 'GET';
      body = undefined;
    }
  }
}

/** `user:password@` in a URL: refused (the credentials would be sent to whoever the host is, and fetch-style clients reject them). */
export const hasCredentials = (url: URL): boolean => url.username !== '' || url.password !== '';

/** A URL for messages and logs: credentials, query and fragment dropped (they may hold secrets). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}
