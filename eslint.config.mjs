// Lint configuration (run by `npm test` through `npm run lint`): ESLint's
// recommended rules and typescript-eslint's, over the TypeScript sources,
// tests, benchmarks and scripts. Type-aware rules are left to `tsc --strict`.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'native/build/**', 'bench/results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', __dirname: 'readonly', require: 'readonly', module: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', setImmediate: 'readonly', URL: 'readonly', fetch: 'readonly', AbortSignal: 'readonly', performance: 'readonly', structuredClone: 'readonly', TextDecoder: 'readonly', TextEncoder: 'readonly' },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // CommonJS scripts run by node directly; package.json (version.ts) and
    // the optional native addon (native/addon.ts) are loaded at run time.
    files: ['scripts/**/*.js', 'src/version.ts', 'src/native/addon.ts'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
