/**
 * An AgentOutput that redacts secrets before passing anything on.
 *
 * Invariants:
 * - Text and command output are streams: a secret split across deltas is
 *   still caught, because each stream holds back a possible beginning of a
 *   secret until the next delta shows whether it is one.
 * - Order is kept: before anything else is passed on, what the streams hold
 *   back is released, so held text never comes out after a later tool call.
 * - Tool call inputs and results are redacted whole, strings at any depth.
 * - `flush()` releases everything held back; call it when the turn ends.
 */
import type { RedactingStream, SecretRedactor } from "../utils/redaction";
import type { AgentOutput } from "./types";

export interface RedactingOutput extends AgentOutput {
  flush(): void;
}

export function redactingOutput(output: AgentOutput, redactor: SecretRedactor): RedactingOutput {
  const text = redactor.stream();
  const streams = { stdout: redactor.stream(), stderr: redactor.stream() };
  // The stream that may be holding something back, released before any other output.
  let current: { stream: RedactingStream; emit: (text: string) => void } | null = null;

  const release = () => {
    if (!current) return;
    const rest = current.stream.end();
    if (rest) current.emit(rest);
    current = null;
  };
  const through = (stream: RedactingStream, emit: (text: string) => void, delta: string) => {
    if (current?.stream !== stream) {
      release();
      current = { stream, emit };
    }
    const released = stream.push(delta);
    if (released) emit(released);
  };

  return {
    text(delta) {
      through(text, (t) => output.text(t), delta);
    },
    commandOutput(stream, delta) {
      through(streams[stream], (t) => output.commandOutput(stream, t), delta);
    },
    toolCall(call) {
      release();
      output.toolCall({ ...call, input: redactor.redactValue(call.input) });
    },
    toolResult(result) {
      release();
      output.toolResult({ ...result, output: redactor.redactValue(result.output) });
    },
    flush: release,
  };
}
