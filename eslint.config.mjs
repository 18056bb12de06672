// Lint: ESLint's and typescript-eslint's recommended rules over the sources, tests, benchmarks,
// examples and scripts (type checking itself is tsc's, strict). Run by `npm run lint` and CI.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: 'module',
      globals: {
        AbortController: 'readonly', AbortSignal: 'readonly', Buffer: 'readonly', NodeJS: 'readonly', Response: 'readonly',
        TextDecoder: 'readonly', TextEncoder: 'readonly', URL: 'readonly', WebAssembly: 'readonly', clearInterval: 'readonly',
        clearTimeout: 'readonly', console: 'readonly', fetch: 'readonly', globalThis: 'readonly', performance: 'readonly',
        process: 'readonly', queueMicrotask: 'readonly', setImmediate: 'readonly', setInterval: 'readonly', setTimeout: 'readonly',
        structuredClone: 'readonly',
      },
    },
    rules: {
      // A leading underscore marks a binding kept on purpose (a destructured field left out, an unused parameter).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_', ignoreRestSiblings: true }],
      // Control characters in patterns are deliberate here: they strip or refuse terminal escapes and NULs in untrusted text.
      'no-control-regex': 'off',
      // A `let` closed over before its one assignment (a handler created before the state it serves) cannot be const.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // prom-client's collect() and the router's wrappers run with their own `this`; `self` names the outer one.
      '@typescript-eslint/no-this-alias': ['error', { allowedNames: ['self'] }],
    },
  },
);
