import { dataplaneScenarios } from './dataplane.scenarios.js';
import { netnsFactory } from './suite.js';

dataplaneScenarios(netnsFactory);
