import { connect } from 'node:net';
import { it } from 'vitest';
import { startApiHarness } from '../helpers/api-harness.js';
function raw(port: number, text: string, halfClose = true): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => { s.write(text); if (halfClose) s.end(); });
    let out = '';
    s.on('data', (c) => (out += c.toString()));
    s.on('close', () => resolve(out));
    s.on('error', () => resolve(out + '[error]'));
    setTimeout(() => { s.destroy(); }, 3000);
  });
}
it('x', async () => {
  const h = await startApiHarness({ name: 'probe', workers: [] });
  const b = 'XyZ';
  const part = `--${b}\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\nContent-Type: application/octet-stream\r\n\r\nhello`;
  for (const [name, ct, body] of [
    ['noboundary', 'multipart/form-data', part + `\r\n--${b}--\r\n`],
    ['wrongboundary', 'multipart/form-data; boundary=Other', part + `\r\n--${b}--\r\n`],
    ['noclose', `multipart/form-data; boundary=${b}`, part],
  ]) {
    const r = await h.app.inject({ method: 'POST', url: '/v1/clips', headers: { 'content-type': ct }, payload: body });
    console.log(name, r.statusCode, r.body);
  }
  await h.app.listen({ port: 0, host: '127.0.0.1' });
  const port = (h.app.server.address() as { port: number }).port;
  const json = '{"path":"a.mp4"}';
  console.log('SHORT', JSON.stringify(await raw(port, `POST /v1/clips HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${json.length + 10}\r\n\r\n${json}`)));
  console.log('LONG', JSON.stringify(await raw(port, `POST /v1/clips HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${json.length - 5}\r\n\r\n${json}`)));
  const mp = part + `\r\n--${b}--\r\n`;
  console.log('MSHORT', JSON.stringify(await raw(port, `POST /v1/clips HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=${b}\r\nContent-Length: ${mp.length + 10}\r\n\r\n${mp}`)));
  console.log('MLONG', JSON.stringify(await raw(port, `POST /v1/clips HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=${b}\r\nContent-Length: ${mp.length - 20}\r\n\r\n${mp}`)));
  await h.close();
}, 60000);
