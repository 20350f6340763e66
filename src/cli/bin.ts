#!/usr/bin/env node
/** Auto-run wrapper: `framewise ...` → main(argv); exit code via process.exitCode, never process.exit. */
import { main } from './main.js';

process.exitCode = await main(process.argv);
