/**
 * The graph-model side of the general converter (convert-graph.ts): which nodes the outputs
 * depend on (from a chosen input node on), which of them are static (constants, input shapes
 * and arithmetic over those), and one TF.js run that records every tensor the conversion reads:
 * its shape and dtype, and its values when it is static.
 */
import type * as tfTypes from '@tensorflow/tfjs';
import { FramewiseError } from '../../errors/index.js';
import type { TfNode } from './convert.js';

export type TracedDtype = 'float32' | 'int32' | 'bool';

/** One tensor of the traced graph: its static shape, dtype, and its values when it is static. */
export interface TracedTensor {
  shape: number[];
  dtype: TracedDtype;
  /** Set for static tensors (constants and shape arithmetic). */
  data?: Float32Array | Int32Array | Uint8Array;
}

/** Ops whose value depends only on the input's shape, never its values. */
const SHAPE_OPS = new Set(['Shape', 'Size', 'Rank']);

function unsupportedUse(node: string, why: string): FramewiseError {
  return new FramewiseError('FW_ERR_ONNX_UNSUPPORTED_OP', `cannot convert node '${node}' to ONNX: ${why}`, { details: { node } });
}

/** `name:0` → `name`; `^ctl` inputs dropped. */
export function tensorRef(input: string): string {
  return input.replace(/:0$/, '');
}
export const nodeOf = (ref: string): string => ref.replace(/:\d+$/, '');
export const dataInputs = (n: TfNode): string[] => (n.input ?? []).filter((i) => !i.startsWith('^')).map(tensorRef);

/** Nodes the outputs depend on (data inputs only, nothing above `inputNode`), inputs before consumers. */
export function graphAncestors(nodes: TfNode[], outputs: string[], inputNode?: string): TfNode[] {
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const order: TfNode[] = [];
  const done = new Set<string>();
  const visiting = new Set<string>();
  const stack: Array<{ node: TfNode; expanded: boolean }> = [];
  for (const o of outputs) {
    const n = byName.get(nodeOf(o));
    if (!n) throw unsupportedUse(o, 'no such node in the graph');
    stack.push({ node: n, expanded: false });
  }
  stack.reverse();
  while (stack.length > 0) {
    const top = stack.pop()!;
    if (top.expanded) {
      visiting.delete(top.node.name);
      if (!done.has(top.node.name)) {
        done.add(top.node.name);
        order.push(top.node);
      }
      continue;
    }
    if (done.has(top.node.name) || visiting.has(top.node.name)) continue;
    visiting.add(top.node.name);
    stack.push({ node: top.node, expanded: true });
    if (top.node.name === inputNode) continue;
    for (const i of dataInputs(top.node)) {
      const dep = byName.get(nodeOf(i));
      if (!dep) throw new FramewiseError('FW_ERR_MODEL_INVALID', `node '${top.node.name}' reads '${i}', which is not in the graph`);
      if (!done.has(dep.name)) stack.push({ node: dep, expanded: false });
    }
  }
  return order;
}

/** Names of the static nodes among `order` (constants, shapes of the input, and arithmetic over those). */
export function staticNodes(order: TfNode[], inputNode?: string): Set<string> {
  const out = new Set<string>();
  for (const n of order) {
    if (n.name === inputNode) continue;
    if (n.op === 'Const' || SHAPE_OPS.has(n.op)) out.add(n.name);
    else if (n.op !== 'Placeholder') {
      const ins = dataInputs(n);
      if (ins.length > 0 && ins.every((i) => out.has(nodeOf(i)))) out.add(n.name);
    }
  }
  return out;
}

/** Every tensor reference the converter will read: outputs, inputs of converted nodes. */
export function referencedTensors(order: TfNode[], outputs: string[], inputNode?: string): string[] {
  const stat = staticNodes(order, inputNode);
  const refs = new Set<string>(outputs.map(tensorRef));
  for (const n of order) {
    if (stat.has(n.name) || n.name === inputNode) continue;
    for (const i of dataInputs(n)) refs.add(i);
  }
  for (const n of order) if (!stat.has(n.name) && n.op !== 'Placeholder') refs.add(n.name);
  refs.delete(inputNode ?? '');
  return [...refs].filter((r) => order.find((x) => x.name === nodeOf(r))?.op !== 'Placeholder');
}

/**
 * Run the graph once in TF.js, feeding `input.tensor` at `input.node` (the placeholder, or any
 * node: what is above it is not converted), and record shape, dtype (and, for static tensors,
 * the values) of every tensor the converter reads. No control flow may lie between the input
 * and `outputs`.
 */
export async function traceGraphModel(
  tf: typeof tfTypes,
  model: tfTypes.GraphModel,
  nodes: TfNode[],
  input: { node: string; tensor: tfTypes.Tensor },
  outputs: string[],
): Promise<Map<string, TracedTensor>> {
  const order = graphAncestors(nodes, outputs, input.node);
  const stat = staticNodes(order, input.node);
  const refs = referencedTensors(order, outputs, input.node);
  const feed = { [input.node]: input.tensor };
  let result: tfTypes.Tensor | tfTypes.Tensor[];
  try {
    result = model.execute(feed, refs);
  } catch {
    // graphs with control flow elsewhere (a preprocessing or NMS loop) need executeAsync even for tensors before it
    result = await model.executeAsync(feed, refs);
  }
  const tensors = Array.isArray(result) ? result : [result];
  const trace = new Map<string, TracedTensor>();
  try {
    for (let i = 0; i < refs.length; i++) {
      const ref = refs[i] ?? '';
      const t = tensors[i];
      if (!t) throw unsupportedUse(ref, 'TF.js returned no tensor for it');
      const dtype: TracedDtype = t.dtype === 'float32' ? 'float32' : t.dtype === 'bool' ? 'bool' : t.dtype === 'int32' ? 'int32' : ((): never => {
        throw unsupportedUse(ref, `dtype ${t.dtype}`);
      })();
      const entry: TracedTensor = { shape: [...t.shape], dtype };
      if (stat.has(nodeOf(ref))) {
        const d = await t.data();
        entry.data = d instanceof Float32Array ? Float32Array.from(d) : d instanceof Int32Array ? Int32Array.from(d) : Uint8Array.from(d as Uint8Array);
      }
      trace.set(ref, entry);
    }
  } finally {
    // Const outputs are the model's own weight tensors: disposing them would break the model
    tf.dispose(tensors.filter((_, i) => order.find((x) => x.name === nodeOf(refs[i] ?? ''))?.op !== 'Const'));
  }
  return trace;
}
