export { default } from '@peer/eslint-config';
