// The Web Worker that runs Veil's engine for a page, so that key generation and encryption
// never block it. Messages in: {id, op, args}; out: {id, progress} while a call runs, then
// {id, result} or {id, error}. Byte results are transferred, not copied.
import { Engine } from "./veil-core.mjs";

const enginePromise = Engine.load();

self.onmessage = async (event) => {
  const { id, op, args } = event.data;
  try {
    const engine = await enginePromise;
    let result;
    switch (op) {
      case "open": result = engine.open(args[0], args[1]); break;
      case "close": result = engine.close(args[0]); break;
      case "info": result = engine.info(args[0]); break;
      case "generateKeys":
        result = engine.generateKeys(args[0], (fraction) => self.postMessage({ id, progress: fraction }));
        break;
      case "exportSecret": result = engine.exportSecret(args[0]); break;
      case "importSecret": result = engine.importSecret(args[0], args[1]); break;
      case "encrypt": result = engine.encrypt(args[0], args[1], args[2], args[3]); break;
      case "decrypt": result = engine.decrypt(args[0], args[1]); break;
      default: throw new Error(`unknown operation ${op}`);
    }
    self.postMessage({ id, result }, result instanceof Uint8Array ? [result.buffer] : []);
  } catch (error) {
    self.postMessage({ id, error: String(error?.message ?? error) });
  }
};
