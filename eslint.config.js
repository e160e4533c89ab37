// ESLint: typescript-eslint's type-checked rules over every TypeScript source the build compiles.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'build/**', 'native/**', '**/*.cjs', '**/*.mjs', 'eslint.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // Template literals print numbers, booleans and weft's address types (their toString is the text form)
      // as people expect; other objects and undefined stay an error.
      '@typescript-eslint/restrict-template-expressions': [
        'error',
        { allowNumber: true, allowBoolean: true, allow: [{ from: 'file', name: ['IpAddress', 'Prefix'], path: 'common/cidr.ts' }] },
      ],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // `async` marks a method that returns a promise (an interface's, a fake's) whether or not it awaits.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    // rtnetlink message types are plain numbers from the kernel, compared with the netlink package's enums.
    files: ['agent/kernel/**/*.ts'],
    rules: { '@typescript-eslint/no-unsafe-enum-comparison': 'off' },
  },
);
