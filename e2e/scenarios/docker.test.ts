import { dockerScenarios } from './docker.scenarios.js';
import { netnsDockerFactory } from './suite.js';

dockerScenarios(netnsDockerFactory);
