/**
 * The conformance suites on the memory layers.
 */
import { SyncStorage } from "mizu-sync-live"
import { engineSuite } from "./suites/EngineSuite.js"
import { storageSuites } from "./suites/StorageSuite.js"

storageSuites("memory", SyncStorage.layerMemory)
engineSuite("memory", SyncStorage.layerMemory)
