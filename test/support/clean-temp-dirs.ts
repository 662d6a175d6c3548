/** Setup file of every test file: its temporary directories go when it ends (temp-dirs.ts). */
import { afterAll } from "vitest";
import { removeTempDirs } from "./temp-dirs";

afterAll(removeTempDirs);
