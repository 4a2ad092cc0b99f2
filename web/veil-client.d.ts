// Types of veil-client.mjs.

export interface ModelInfo {
  model_id: string;
  task: "classification" | "regression";
  model_kind: string;
  n_features: number;
  input_shape: number[];
  classes: number[];
  n_outputs: number;
  keys_required: boolean;
  security_bits: number;
  parameter_set: string;
  evaluation_key_bytes: number;
  has_keys: boolean;
}

/** A classifier's row: the label and one score per class; a regressor's: its value (an array for several targets). */
export type Prediction = { label: number; scores: number[] } | { value: number | number[] };

export type Row = ArrayLike<number | null>;

export interface ClientOptions {
  /** Run the engine in a Web Worker (default: true in browser pages, false elsewhere). */
  worker?: boolean;
}

export declare class VeilClient {
  static connect(baseUrl: string, modelName: string, options?: ClientOptions): Promise<VeilClient>;
  static fromArtifacts(clientZip: Uint8Array | ArrayBuffer, processingJson: Uint8Array | ArrayBuffer,
                       options?: ClientOptions): Promise<VeilClient>;
  readonly info: ModelInfo;
  readonly keyId: string | null;
  readonly evaluationKeys: Uint8Array;
  /** The last predict's sizes and times; null before the first. */
  readonly lastExchange: { encryptMs: number; serverMs: number; decryptMs: number; sentBytes: number; receivedBytes: number } | null;
  generateKeys(options?: { onProgress?: (fraction: number) => void }): Promise<{ evaluationKeyBytes: number }>;
  uploadKeys(): Promise<{ keyId: string | null; bytes: number; replayed?: boolean; skipped?: boolean }>;
  encrypt(rows: ArrayLike<Row>): Promise<Uint8Array>;
  decrypt(bytes: Uint8Array | ArrayBuffer): Promise<Prediction[]>;
  predict(rows: ArrayLike<Row>): Promise<Prediction[]>;
  exportSecretKey(options?: { passphrase?: string }): Promise<Uint8Array>;
  importSecretKey(bytes: Uint8Array | ArrayBuffer, options?: { passphrase?: string }): Promise<void>;
  close(): void;
}
