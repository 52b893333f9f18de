// Two pages: index.html (the package's functions) and element.html (<otp-verify>).
import { defineConfig } from "vite";

export default defineConfig({
  build: {
    rollupOptions: {
      input: { main: "index.html", element: "element.html" },
    },
  },
});
