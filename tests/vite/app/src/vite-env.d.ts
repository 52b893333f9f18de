/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** The otpgate issuer the page talks to. */
  readonly VITE_OTPGATE_ISSUER: string;
  /** The receipts' audience (the app). */
  readonly VITE_OTPGATE_AUDIENCE: string;
}

interface ImportMeta {
  readonly env: ImportMetaEnv;
}
